"""The moderation signal in ComfyUI: collected while a prompt is encoded, shown, served and (optionally) logged.

Each SafeText embedding hook (:class:`.comfy_clip.EmbeddingBlendHook`) hands :func:`record` the original and the
blended output of its encoder; the core (:mod:`safetext_core.moderation`) turns them into one cosine per prompt.
One text encode is one *scope* (:func:`scope`, opened around ``CLIP.encode_from_tokens`` by :mod:`.enforce`), so
SDXL's two encoders and the 77-token chunks of a long prompt give one signal; outside a scope each encoder call
is reported on its own. ComfyUI appends an empty prompt to the batch when a prompt has weights (``(word:1.2)``);
that row is left out.

Each signal goes to: the websocket event ``safetext.signal`` (the page shows it on the node that encoded the
prompt), ``GET /safetext/v1/signals[?prompt_id=...]`` (the last :data:`KEEP` signals, for API clients), and, when
the operator turns it on in enforced mode, the server log.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from safetext_core.moderation import MOVED_BELOW, SignalSum, combined_signal

log = logging.getLogger("safetext")

EVENT = "safetext.signal"
KEEP = 500  # signals kept for the route
END_TOKEN = 49407  # CLIP's <|endoftext|>: a row whose second token is it encodes the empty prompt
RECENT: "deque[dict[str, Any]]" = deque(maxlen=KEEP)
_LOCK = threading.Lock()
_LOCAL = threading.local()
# Set by .enforce: called with each finished entry (the enforced mode's server log).
LOGGERS: list[Callable[[dict[str, Any], Any], None]] = []


class _Scope:
    """The encoder calls of one text encode: per encoder a running sum, the rows to count, the files' labels."""

    def __init__(self, tokens: Any = None) -> None:
        self.sums: dict[str, tuple[SignalSum, list[int]]] = {}
        self.labels: set[str] = set()
        self.enforced = False
        self.tokens = tokens  # what was encoded (ComfyUI's token-weight dict), for the optional prompt log

    def add(self, hook: Any, args: tuple, original: Any, blended: Any) -> None:
        total, rows = self.sums.get(hook.encoder, (None, None))
        if total is None:
            total, rows = SignalSum(), _prompt_rows(args[0] if args else None)
            self.sums[hook.encoder] = (total, rows)
        try:
            total.add(original, blended)
        except ValueError:  # another batch through the same encoder in one scope: keep the first
            return
        self.labels.add(hook.label or hook.encoder)
        self.enforced = self.enforced or bool(getattr(hook, "enforced", False))

    def entry(self) -> dict[str, Any] | None:
        parts = [(total, rows if rows is not None else range(total.rows)) for total, rows in self.sums.values()]
        signal = combined_signal(parts, MOVED_BELOW)
        if signal is None:
            return None
        prompt_id, node = executing()
        return {"prompt_id": prompt_id, "node": node, **signal.as_dict(), "text": signal.text(),
                "files": sorted(self.labels), "enforced": self.enforced, "time": round(time.time(), 3)}


def _prompt_rows(tokens: Any) -> list[int] | None:
    """Rows that hold the prompt (not the empty prompt ComfyUI adds for weights); None: every row."""
    try:
        rows = [row for row in tokens]
        firsts = [_token_id(row[1]) if len(row) > 1 else None for row in rows]
    except TypeError:
        return None
    kept = [i for i, first in enumerate(firsts) if first != END_TOKEN]
    return kept if kept else None  # an empty prompt on its own is still a prompt


def _token_id(value: Any) -> int | None:
    try:
        return int(value)  # ints, 0-d tensors
    except (TypeError, ValueError, RuntimeError):
        return None  # an embedding (textual inversion) in place of a token


def executing() -> tuple[str | None, str | None]:
    """(prompt id, node id) of the node running now, as ComfyUI tracks them."""
    try:
        from comfy_execution.utils import get_executing_context

        context = get_executing_context()
        if context is not None:
            return context.prompt_id, context.node_id
    except Exception:  # older ComfyUI, or outside it
        pass
    try:
        from server import PromptServer

        instance = PromptServer.instance
        return getattr(instance, "last_prompt_id", None), getattr(instance, "last_node_id", None)
    except Exception:
        return None, None


@contextmanager
def scope(tokens: Any = None) -> Iterator[None]:
    """One text encode: the signals of every encoder call inside are reported once, at the end. Nested scopes
    (``encode_from_tokens`` inside ``encode_from_tokens_scheduled``) join the outer one."""
    if getattr(_LOCAL, "scope", None) is not None:
        yield
        return
    current = _LOCAL.scope = _Scope(tokens)
    try:
        yield
    finally:
        _LOCAL.scope = None
    report(current)


def record(hook: Any, args: tuple, original: Any, blended: Any) -> None:
    """Called by an embedding hook with its encoder's original and blended output. Never raises: the signal
    is a report, and a report must not stop a generation."""
    try:
        current = getattr(_LOCAL, "scope", None)
        if current is not None:
            current.add(hook, args, original, blended)
            return
        alone = _Scope()
        alone.add(hook, args, original, blended)
        report(alone)
    except Exception as error:  # pragma: no cover - a bug here must not cost the user their image
        log.warning("SafeText: no moderation signal for this prompt (%s: %s)", type(error).__name__, error)


def report(current: _Scope) -> dict[str, Any] | None:
    entry = current.entry()
    if entry is None:
        return None
    with _LOCK:
        RECENT.append(entry)
    from . import host

    host.send_event(entry, EVENT)
    for logger in list(LOGGERS):
        try:
            logger(entry, current.tokens)
        except Exception as error:  # pragma: no cover - logging must not stop a generation
            log.warning("SafeText: could not log a signal: %s", error)
    return entry


def recent(prompt_id: str | None = None) -> list[dict[str, Any]]:
    with _LOCK:
        entries = list(RECENT)
    return [e for e in entries if prompt_id is None or e.get("prompt_id") == prompt_id]
