"""SafeText's fields in an image's generation parameters, written after a job and read back when pasted.

Written: ``SafeText: <file name>, SafeText fingerprint: <id>, SafeText strength: <s>`` plus ``SafeText mode:
weight`` and ``SafeText lock: True`` when they apply, and the moderation signal per image (``SafeText cosine:
0.123, SafeText moved: True``: how far SafeText moved that image's prompt, see
:mod:`safetext_core.moderation`); the API's ``info`` carries both lists in ``extra_generation_params``. Read back (paste, "Send to txt2img", PNG info): the
panel's four values, through the ``infotext_pasted`` callback and the Script's ``infotext_fields``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from safetext_core.errors import ConfigError
from safetext_core.hosting import SUFFIX, check_file_name
from safetext_core.safetext_file import SafeTextFile
from safetext_core.weights import BLEND_MODES, check_strength

from .args import DEFAULT_MODE, Settings

NAME = "SafeText"
FINGERPRINT = "SafeText fingerprint"
STRENGTH = "SafeText strength"
MODE = "SafeText mode"
LOCK = "SafeText lock"
ENABLED = "SafeText enabled"  # written by the paste callback only, for the panel's checkbox
FILE = "SafeText file"
COSINE = "SafeText cosine"
MOVED = "SafeText moved"
PASTE_FIELDS = [NAME, STRENGTH, MODE]


def fields(settings: Settings, file: SafeTextFile | None) -> dict[str, Any]:
    """The generation parameters of a job that ran with ``settings`` and ``file``."""
    out: dict[str, Any] = {NAME: Path(check_file_name(settings.file)).stem if settings.file else ""}
    if file is not None:
        out[FINGERPRINT] = file.short_fingerprint()
    out[STRENGTH] = round(settings.strength, 4)
    if settings.mode != DEFAULT_MODE:
        out[MODE] = settings.mode
    if settings.locked:
        out[LOCK] = True
    return out


def add_signals(p: Any, signals: list[Any], batch_number: int) -> None:
    """Put one batch's signals (per image, :class:`~safetext_core.moderation.PromptSignal` or None) into the job's
    generation parameters. The webui reads a list value at the image's index, in the infotext and in the API's
    ``info``, so each field is a list over every image of the job."""
    batch = max(1, int(getattr(p, "batch_size", len(signals)) or len(signals)))
    total = max(1, int(getattr(p, "n_iter", 1) or 1)) * batch
    params = p.extra_generation_params
    for key in (COSINE, MOVED):
        if not isinstance(params.get(key), list) or len(params[key]) != total:
            params[key] = [None] * total
    for i, signal in enumerate(signals):
        index = batch_number * batch + i
        if signal is not None and index < total:
            params[COSINE][index] = signal.cosine
            params[MOVED][index] = signal.moved


def pasted_values(params: dict[str, Any]) -> dict[str, Any]:
    """The panel's values from pasted generation parameters (empty when they carry no SafeText)."""
    if NAME not in params:
        return {}
    name = str(params.get(NAME) or "").strip()
    values: dict[str, Any] = {"enabled": bool(name), "file": name + SUFFIX if name and not name.endswith(SUFFIX) else name}
    try:
        values["strength"] = check_strength(params.get(STRENGTH, 1.0))
    except ConfigError:
        values["strength"] = 1.0
    mode = params.get(MODE, DEFAULT_MODE)
    values["mode"] = mode if mode in BLEND_MODES else DEFAULT_MODE
    return values


def on_infotext_pasted(infotext: str, params: dict[str, Any]) -> None:
    """The webui's paste callback: add the panel's values under names the UI and the API can read."""
    values = pasted_values(params)
    if values:
        params.update({ENABLED: values["enabled"], FILE: values["file"], STRENGTH: values["strength"],
                       MODE: values["mode"]})


def readers(unchanged: Callable[[], Any]) -> list[Callable[[dict[str, Any]], Any]]:
    """For the Script's ``infotext_fields``: one reader per panel control (enabled, file, strength, mode).

    ``unchanged()`` is what a reader returns to leave a control as it is; a paste without SafeText turns it off.
    """
    def reader(name: str) -> Callable[[dict[str, Any]], Any]:
        return lambda params: pasted_values(params).get(name, unchanged())

    return [lambda params: pasted_values(params).get("enabled", False)] + [reader(n) for n in ("file", "strength",
                                                                                              "mode")]
