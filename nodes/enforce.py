"""Enforced mode for ComfyUI servers: SafeText on every text encoder any loader produces, whatever the graph says.

The operator turns it on with a JSON file read once at start-up (the page and the API cannot change it):
``$SAFETEXT_ENFORCE`` names the file; without the variable, ``safetext_enforce.json`` next to ComfyUI's
``main.py`` is used when it exists. Fields (all optional): ``enabled`` (true), ``strength`` (1.0), ``files``
(names in models/safetext to choose from, in order; default: every file there), ``allow_unprotected`` (false:
a checkpoint with no fitting file stops the prompt), ``allow_training`` (false: SafeText Train refuses, so no
one can add a weaker file), ``log_signal`` and ``log_prompts`` (false: the moderation signal, and the prompt's
text with it, in the server log). A file that cannot be read or has unknown fields makes every text encode
fail: the mode never fails open.

How it holds (ComfyUI 0.3.64 and current): every text encode goes through ``comfy.sd.CLIP.load_model`` before
the encoder runs (``encode_from_tokens`` and the scheduled path alike). Wrapped at the class, it first gives
the CLIP SafeText (:func:`ensure`): the file whose fingerprint fits the CLIP's original weights, applied as
SafeText Load & Apply applies it (embedding blend, the server's strength) to a clone whose patcher replaces the
CLIP's, so clones made later (LoRA loaders, CLIP Set Last Layer) keep it and it is applied once per CLIP. A
forward pre-hook on each text encoder module (installed when a loader builds the CLIP) is the backstop: an
encoder that runs without the enforced hook, e.g. called by a custom node around ``load_model``, raises
:class:`SafeTextNotApplied`. SafeText Load & Apply passes its CLIP through untouched in this mode (its
``enabled``/strength/file are overridden; nothing is applied twice).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field, fields
from typing import Any

from safetext_core.errors import ConfigError, SafeTextError, SafeTextFileError, SafeTextNotApplied
from safetext_core.hosting import file_entry
from safetext_core.weights import check_strength

from . import comfy_clip, host, signals

log = logging.getLogger("safetext")

ENV = "SAFETEXT_ENFORCE"
FILE_NAME = "safetext_enforce.json"
STATE_EVENT = "safetext.enforce"


@dataclass(frozen=True)
class EnforceConfig:
    """The operator's settings (see the module docstring); ``error``: the file could not be used."""

    enabled: bool = False
    strength: float = 1.0
    files: tuple[str, ...] = ()
    allow_unprotected: bool = False
    allow_training: bool = False
    log_signal: bool = False
    log_prompts: bool = False
    source: str = field(default="", compare=False)
    error: str | None = field(default=None, compare=False)

    def public(self) -> dict[str, Any]:
        """What the page and ``GET /safetext/v1/enforce`` show (the config file's path stays on the server)."""
        return {"enforced": self.enabled, "strength": self.strength, "mode": "embedding",
                "files": list(self.files), "allow_unprotected": self.allow_unprotected,
                "allow_training": self.allow_training, "log_signal": self.log_signal, "error": self.error}


_FIELDS = {f.name: f for f in fields(EnforceConfig) if f.name not in ("source", "error")}


def parse_config(data: Any, source: str = "") -> EnforceConfig:
    """:class:`EnforceConfig` from the file's JSON object; :class:`ConfigError` naming what is wrong."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'the enforced-mode file'} must hold a JSON object")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown fields {unknown} in {source}; known: {sorted(_FIELDS)}")
    values: dict[str, Any] = {"enabled": True}
    for name, value in data.items():
        if name == "strength":
            if isinstance(value, bool):
                raise ConfigError(f"strength must be a number, not {value!r}")
            values[name] = check_strength(value)
            if values[name] == 0.0:
                raise ConfigError("strength 0 would enforce nothing; set enabled to false instead")
        elif name == "files":
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigError("files must be a list of file names in models/safetext")
            values[name] = tuple(v.strip() for v in value)
        elif not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, not {value!r}")
        else:
            values[name] = value
    return EnforceConfig(**values, source=source)


def config_path() -> str | None:
    """The enforced-mode file: ``$SAFETEXT_ENFORCE``, else ``safetext_enforce.json`` next to ComfyUI's main.py."""
    named = os.environ.get(ENV, "").strip()
    if named:
        return named
    try:
        import folder_paths

        candidate = os.path.join(os.path.dirname(os.path.realpath(folder_paths.__file__)), FILE_NAME)
    except (ImportError, AttributeError, TypeError):  # outside ComfyUI
        return None
    return candidate if os.path.exists(candidate) else None


def read_config() -> EnforceConfig:
    """The operator's settings. A file that is named but unreadable gives an *enabled* config with ``error``:
    an operator who asked for the mode never gets a server without it."""
    path = config_path()
    if path is None:
        return EnforceConfig()
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_config(json.load(handle), path)
    except (OSError, ValueError, SafeTextError) as error:
        message = f"the enforced-mode file {path} cannot be used ({error})"
        log.error("SafeText: %s; every text encode will fail until it is fixed and ComfyUI restarted", message)
        return EnforceConfig(enabled=True, source=path, error=message)


CONFIG = EnforceConfig()
_EXEMPT: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()  # encoder module -> why it may run bare
_PICKS: dict[tuple, tuple[str, int]] = {}  # fingerprints -> (file name, mtime) chosen for them
_LOCK = threading.RLock()
UNPROTECTED: dict[str, str] = {}  # family + fingerprint -> reason, for the page (allow_unprotected only)


def active() -> bool:
    return CONFIG.enabled


# ------------------------------------------------------------------------------------------------ choosing a file

def candidates() -> list[str]:
    return list(CONFIG.files) if CONFIG.files else host.list_files()


def pick_file(family: str, prints: dict[str, str]):
    """The first candidate file made for these fingerprints (headers only are read to choose), or None."""
    key = (family, tuple(sorted(prints.items())))
    known = _PICKS.get(key)
    if known is not None:
        name, mtime = known
        try:
            if os.stat(host.full_path(name)).st_mtime_ns == mtime:
                return name
        except (OSError, SafeTextError):
            pass
    for name in candidates():
        try:
            path = host.full_path(name)
        except SafeTextError as error:
            log.warning("SafeText enforced mode: %s", error)
            continue
        entry = file_entry(path, name, prints)
        if entry and entry.get("fits") and entry.get("family") == family:
            _PICKS[key] = (name, os.stat(path).st_mtime_ns)
            return name
    return None


# ------------------------------------------------------------------------------------------------ applying

def _enforced_hooks(patcher: Any) -> list[Any]:
    hooks = []
    for key, table in (getattr(patcher, "object_patches", None) or {}).items():
        if key.endswith("._forward_hooks") and hasattr(table, "values"):
            hooks += [h for h in table.values()
                      if isinstance(h, comfy_clip.EmbeddingBlendHook) and getattr(h, "enforced", False)]
    return hooks


def is_enforced(clip: Any) -> bool:
    """Whether ``clip`` carries the enforced mode's SafeText (or runs bare by the operator's leave)."""
    return bool(_enforced_hooks(getattr(clip, "patcher", None))) or _all_exempt(clip)


def _encoders(clip: Any) -> dict[str, Any]:
    model = getattr(clip, "cond_stage_model", None)
    children = getattr(model, "_modules", None) or {}
    return {name: m for name, m in children.items() if m is not None and hasattr(m, "register_forward_pre_hook")}


def _all_exempt(clip: Any) -> bool:
    encoders = _encoders(clip)
    return bool(encoders) and all(m in _EXEMPT for m in encoders.values())


def _unprotected(clip: Any, reason: str) -> None:
    if not CONFIG.allow_unprotected:
        raise SafeTextNotApplied(
            f"SafeText enforced mode: {reason}. This server encodes prompts only with SafeText; put a SafeText file "
            "trained for this checkpoint in models/safetext (the operator can list it in the enforced-mode file), "
            "or use another checkpoint")
    for module in _encoders(clip).values():
        _EXEMPT[module] = reason
    if reason not in UNPROTECTED:
        log.warning("SafeText enforced mode: running WITHOUT SafeText (allow_unprotected is on): %s", reason)
    UNPROTECTED[reason] = reason
    host.send_event(status(), STATE_EVENT)


def ensure(clip: Any) -> None:
    """Give ``clip`` the enforced SafeText before it encodes (idempotent: once per CLIP and its later clones)."""
    if not CONFIG.enabled:
        return
    if CONFIG.error:
        raise SafeTextNotApplied(f"SafeText enforced mode: {CONFIG.error}; refusing to encode prompts")
    if is_enforced(clip):
        return
    with _LOCK:
        if is_enforced(clip):
            return
        try:
            family = comfy_clip.family_of(clip)
        except comfy_clip.UnsupportedClip as error:
            _unprotected(clip, str(error))
            return
        prints = comfy_clip.fingerprints(clip, family)
        name = pick_file(family, prints)
        if name is None:
            where = ", ".join(CONFIG.files) if CONFIG.files else "models/safetext"
            _unprotected(clip, f"no SafeText file in {where} fits this checkpoint ({family}, text-encoder fingerprint "
                               f"{'+'.join(v[:12] for _, v in sorted(prints.items()))})")
            return
        from .base import load_file

        file = load_file(name)
        out, _ = comfy_clip.apply_file(clip, file, CONFIG.strength, "embedding", family=family, enforced=True)
        encoders = _encoders(clip)
        for encoder, module in encoders.items():
            if not file.deltas.get(encoder):
                _EXEMPT[module] = f"{name} leaves {encoder} unchanged"
        clip.patcher = out.patcher  # this CLIP (a node's cached output) and every later clone carry it
        log.info("SafeText enforced mode: %s applied at strength %g", name, CONFIG.strength)


def _sentinel(module: Any, args: tuple) -> None:
    """Forward pre-hook on each text encoder: it runs only under the enforced hook (or with leave to run bare)."""
    if not CONFIG.enabled or module in _EXEMPT:
        return None
    table = getattr(module, "_forward_hooks", None) or {}
    if any(isinstance(h, comfy_clip.EmbeddingBlendHook) and getattr(h, "enforced", False) for h in table.values()):
        return None
    raise SafeTextNotApplied("SafeText enforced mode: a text encoder ran without SafeText (something encoded text "
                             "without ComfyUI's CLIP.load_model); refusing to encode the prompt")


def guard_encoders(clip: Any) -> None:
    """Install the backstop on the CLIP's encoder modules (once per module)."""
    for module in _encoders(clip).values():
        if not getattr(module, "_safetext_sentinel", False):
            module.register_forward_pre_hook(_sentinel)
            module._safetext_sentinel = True


def check_training() -> None:
    """SafeText Train refuses while enforced (unless allowed): a new file would be picked by fingerprint."""
    if CONFIG.enabled and not CONFIG.allow_training:
        raise SafeTextError("SafeText Train is disabled on this server: the operator enforces SafeText, and new files "
                            "in models/safetext would be applied to everyone")


# ------------------------------------------------------------------------------------------------ ComfyUI hooks

def _wrap(cls: Any, name: str, make: Any) -> None:
    original = getattr(cls, name, None)
    if original is None or getattr(original, "safetext_wrapper", False):
        return
    wrapper = make(original)
    wrapper.safetext_wrapper = True
    wrapper.__wrapped__ = original
    wrapper.__name__ = name
    setattr(cls, name, wrapper)


def _with_scope(original: Any) -> Any:
    def encode(self: Any, tokens: Any = None, *args: Any, **kwargs: Any) -> Any:
        with signals.scope(tokens):
            return original(self, tokens, *args, **kwargs)
    return encode


def _loading(original: Any) -> Any:
    def load_model(self: Any, *args: Any, **kwargs: Any) -> Any:
        ensure(self)
        return original(self, *args, **kwargs)
    return load_model


def _building(original: Any) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if hasattr(self, "cond_stage_model"):  # not a clone (no_init)
            guard_encoders(self)
    return __init__


def install(clip_class: Any = None) -> bool:
    """Wrap ComfyUI's ``CLIP``: a signal scope around each text encode, and in enforced mode ``load_model``
    (SafeText first) and ``__init__`` (the backstop). Returns False when there is no ComfyUI to wrap."""
    if clip_class is None:
        try:
            import comfy.sd

            clip_class = comfy.sd.CLIP
        except (ImportError, AttributeError):
            return False
    for name in ("encode_from_tokens", "encode_from_tokens_scheduled"):
        _wrap(clip_class, name, _with_scope)
    if CONFIG.enabled:
        _wrap(clip_class, "load_model", _loading)
        _wrap(clip_class, "__init__", _building)
    return True


def status() -> dict[str, Any]:
    """The mode's state for the page: on/off, strength, files, checkpoints that run unprotected."""
    return {**CONFIG.public(), "unprotected": sorted(UNPROTECTED)}


def log_signal(entry: dict[str, Any], tokens: Any) -> None:
    """The enforced mode's server log line for one prompt (``log_signal``; the text only with ``log_prompts``)."""
    if not (CONFIG.enabled and CONFIG.log_signal):
        return
    text = ""
    if CONFIG.log_prompts:
        text = f" text={prompt_text(tokens)!r}"
    log.info("SafeText signal: prompt %s node %s: %s files=%s%s", entry.get("prompt_id"), entry.get("node"),
             entry.get("text"), ",".join(entry.get("files", [])), text)


def prompt_text(tokens: Any) -> str:
    """The words of ComfyUI's token-weight dict (``{"l": [[(id, weight), ...], ...], ...}``), decoded with the CLIP
    vocabulary; empty when they cannot be read."""
    def token(item: Any) -> int | None:
        item = item[0] if isinstance(item, (tuple, list)) else item  # (id, weight[, word id]) or a bare id
        try:
            return int(item)
        except (TypeError, ValueError, RuntimeError):  # an embedding in place of a token
            return None

    try:
        sections = next(iter(tokens.values())) if isinstance(tokens, dict) else tokens
        ids = [t for section in sections for t in map(token, section) if t is not None]
        tokenizer = comfy_clip._tokenizer(comfy_clip.tokenizer_folder(), "<|endoftext|>")
        return tokenizer.decode(ids, skip_special_tokens=True).strip()
    except Exception:  # a report only
        return ""


def add_routes() -> None:
    """``GET /safetext/v1/enforce`` (the mode's state) and ``GET /safetext/v1/signals[?prompt_id=]``."""
    try:
        from aiohttp import web
        from server import PromptServer

        routes = PromptServer.instance.routes
    except Exception:  # no server (unit tests, scripts)
        return

    @routes.get("/safetext/v1/enforce")
    async def enforce_state(request):
        return web.json_response(status())

    @routes.get("/safetext/v1/signals")
    async def recent_signals(request):
        return web.json_response({"signals": signals.recent(request.rel_url.query.get("prompt_id"))})


def start() -> None:
    """At pack import: read the operator's file, wrap ComfyUI's CLIP, add the routes."""
    global CONFIG
    CONFIG = read_config()
    if CONFIG.enabled:
        log.warning("SafeText enforced mode is ON (%s): strength %g, %s%s", CONFIG.source, CONFIG.strength,
                    "files " + ", ".join(CONFIG.files) if CONFIG.files else "any fitting file in models/safetext",
                    "; checkpoints without a file run unprotected" if CONFIG.allow_unprotected else "")
    if log_signal not in signals.LOGGERS:
        signals.LOGGERS.append(log_signal)
    if not install() and CONFIG.enabled:
        log.error("SafeText enforced mode: comfy.sd.CLIP not found; SafeText cannot be enforced")
    add_routes()


__all__ = ["EnforceConfig", "parse_config", "read_config", "ensure", "install", "status", "start", "check_training",
           "is_enforced", "active"]
