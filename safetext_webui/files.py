"""The SafeText folder as the webui sees it: the chosen file, whether it fits the loaded checkpoint, the panel's list.

Names, listing, caching and fit marks come from :mod:`safetext_core.hosting`; this module adds only what is
webui-specific: the folder from Settings, the fingerprints of the checkpoint the webui has loaded (A1111 or
Forge), the mismatch override, and the file dropdown's choices in the form each Gradio version takes.
"""
from __future__ import annotations

from typing import Any, Mapping

import gradio as gr
from modules import shared

from safetext_core.errors import SafeTextError, SafeTextFileError
from safetext_core.hosting import FileCache, list_files as list_folder, resolve_file
from safetext_core.safetext_file import SafeTextFile

from . import forge, hijack
from .args import Settings
from .settings import allow_mismatch, models_dir

FITS_MARK = " \u2713 fits this checkpoint"
_CACHE = FileCache()


def loaded_model() -> Any:
    """The checkpoint in memory, or None; unlike ``shared.sd_model`` this never starts loading one.

    Forge holds a placeholder without text encoders (``FakeInitialModel``) until its first job: that is None too.
    """
    try:
        from modules import sd_models
    except ImportError:
        model = getattr(shared, "sd_model", None)
    else:
        model = getattr(getattr(sd_models, "model_data", None), "sd_model", None)
    if model is None or forge.is_forge(model) or hasattr(model, "conditioner"):
        return model
    return model if getattr(model, "cond_stage_model", None) is not None else None


def load_checkpoint() -> Any:
    """The checkpoint in memory, loading the selected one first if none is (as A1111's ``shared.sd_model`` does
    on first use; Forge loads only for a job). None when there is none to load."""
    getattr(shared, "sd_model", None)
    if loaded_model() is None:
        forge.load_checkpoint()
    return loaded_model()


def loaded_fingerprints(sd_model: Any) -> dict[str, str]:
    """``{encoder: fingerprint}`` of ``sd_model``'s original text encoders, on A1111 or Forge."""
    return forge.loaded_fingerprints(sd_model) if forge.is_forge(sd_model) else hijack.loaded_fingerprints(sd_model)


def current_fingerprints() -> dict[str, str] | None:
    """The loaded checkpoint's fingerprints; None when none is loaded or SafeText does not support it."""
    model = loaded_model()
    if model is None:
        return None
    try:
        return loaded_fingerprints(model)
    except SafeTextError:
        return None


def load_file(name: Any) -> SafeTextFile:
    """The SafeText file ``name`` from the folder (cached until it changes on disk)."""
    return _CACHE.load(resolve_file(models_dir(), name))


def checked_file(settings: Settings, fingerprints: Mapping[str, str]) -> SafeTextFile:
    """``settings``' file, refused when it was made for another checkpoint (unless Settings allow it)."""
    if not settings.file:
        raise SafeTextFileError("SafeText is on but no SafeText file is chosen" +
                                (" (operator lock: set the lock's file in Settings)" if settings.locked else ""))
    file = load_file(settings.file)
    file.check_fingerprints(fingerprints, override=allow_mismatch())
    return file


def applicable_file(settings: Settings, sd_model: Any) -> SafeTextFile:
    """``settings``' file, checked against ``sd_model``; with no model loaded, only read."""
    if sd_model is None:
        return load_file(settings.file or "")
    return checked_file(settings, loaded_fingerprints(sd_model))


def list_files() -> list[dict[str, Any]]:
    """Every SafeText file in the folder with whether it fits the loaded checkpoint (``fits``; None: unknown)."""
    return list_folder(models_dir(), current_fingerprints())


def file_choices() -> list[tuple[str, str]]:
    """``(label, file name)`` for every file in the folder, the label saying whether it fits."""
    choices = []
    for entry in list_files():
        label = entry["name"]
        if entry.get("error"):
            label += " (unreadable)"
        elif entry["fits"] is True:
            label += FITS_MARK
        elif entry["fits"] is False:
            label += " (for another checkpoint)"
        choices.append((label, entry["name"]))
    return choices


def file_names() -> list[str]:
    return [name for _, name in file_choices()]


def default_file() -> str:
    """The first file that fits the loaded checkpoint, else the first file, else ""."""
    entries = list_files()
    fitting = [e["name"] for e in entries if e["fits"]]
    return fitting[0] if fitting else (entries[0]["name"] if entries else "")


def gradio_takes_labelled_choices() -> bool:
    """Gradio 4 (Forge) takes ``(label, value)`` dropdown choices; Gradio 3.41's Dropdown (A1111 v1.10.1) would show
    the pairs as text (its Radio takes them)."""
    try:
        return int(str(getattr(gr, "__version__", "3")).split(".")[0]) >= 4
    except ValueError:
        return False


NOT_KNOWN_YET = "which file fits this checkpoint shows once it has loaded: press \U0001f504"


def file_dropdown_update() -> dict[str, Any]:
    """Keyword arguments for the file dropdown (at build and on refresh).

    Only ``choices`` and ``info``: both ``Dropdown.__init__`` and Gradio 3.41's ``Dropdown.update`` accept them.
    On Gradio 3 the fit marks go into ``info``, as choices are plain names.
    """
    choices = file_choices()
    if gradio_takes_labelled_choices():
        return {"choices": choices, "info": "\u2713 marks files trained for the loaded checkpoint"}
    fitting = [value for label, value in choices if label.endswith(FITS_MARK)]
    if fitting:
        info = f"fits this checkpoint: {', '.join(fitting)}"
    elif choices and current_fingerprints() is None:  # the page is built before the webui loads its checkpoint
        info = NOT_KNOWN_YET
    else:
        info = "no file here was trained for the loaded checkpoint"
    return {"choices": [value for _, value in choices], "info": info}
