"""What the SafeText nodes share: the file list and cache, file checks before a run, and showing results.

A node module (``apply``, ``train``, ``evaluate``) declares its inputs and turns ComfyUI objects into core calls;
everything two of them need lives here once. User errors are :class:`safetext_core.errors.SafeTextError`
subclasses, whose message ComfyUI shows on the node.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch

from safetext_core.errors import SafeTextError
from safetext_core.hosting import FileCache
from safetext_core.safetext_file import SafeTextFile

from . import host

log = logging.getLogger("safetext")

CATEGORY = "SafeText"
NO_FILE = "(no SafeText files: train one first)"
FILES = FileCache()  # the last few files read, shared by every node


def file_choices() -> list[str]:
    """The list a ``safetext_file`` input offers (a placeholder when there is nothing to pick)."""
    try:
        files = host.list_files()
    except Exception:  # folder_paths not ready: never break /object_info
        files = []
    return files or [NO_FILE]


def load_file(name: str) -> SafeTextFile:
    return FILES.load(host.full_path(name))


def missing_file_message(name: Any) -> str | None:
    """Why ``name`` cannot be read from models/safetext, or None when it can."""
    if name in ("", NO_FILE):
        return "no SafeText file chosen (models/safetext is empty): train one with the SafeText Train node first"
    try:
        host.full_path(name)
    except SafeTextError as error:
        return str(error)
    return None


class ReadsSafeTextFile:
    """ComfyUI hooks of a node that reads a ``safetext_file`` from models/safetext.

    ``IS_CHANGED`` follows the file on disk, so a retrained file is picked up. ``VALIDATE_INPUTS`` names only
    ``safetext_file`` (ComfyUI skips its own list check for the inputs it names, and only those), so a file
    that is not there stops the prompt before it runs, with a message that says what to do.
    """

    @classmethod
    def IS_CHANGED(cls, safetext_file=None, **_):
        try:
            stat = os.stat(host.full_path(safetext_file))
            return f"{safetext_file}:{stat.st_mtime_ns}:{stat.st_size}"
        except (OSError, SafeTextError):
            return f"{safetext_file}:missing"

    @classmethod
    def VALIDATE_INPUTS(cls, safetext_file=None):
        # None: the input is linked from another node, known only when the node runs (and checked there).
        return True if safetext_file is None else (missing_file_message(safetext_file) or True)


# --------------------------------------------------------------------------------------------- showing results

def split_lines(text: str) -> list[str]:
    """Prompts typed into a node: one a line, blank lines and ``#`` comments left out; the core's rule
    (:func:`safetext_core.prompt_sets.prompt_list`: a line that is empty once cleaned is a PromptError naming it)."""
    from safetext_core.prompt_sets import prompt_list

    return prompt_list(text or "", "prompts")


def figures_text(figures: dict, title: str = "") -> str:
    lines = [title] if title else []
    for key, value in figures.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return "\n".join(lines)


def pil_to_image(picture: Any) -> torch.Tensor:
    """PIL image -> ComfyUI IMAGE ([1, H, W, 3] float in 0..1)."""
    import numpy as np

    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).unsqueeze(0)


def preview(picture: Any, prefix: str) -> list[dict]:
    """Save a picture in ComfyUI's temp folder and return the ``ui.images`` entry that shows it on the node."""
    try:
        folder = host.temp_image_dir()
        os.makedirs(folder, exist_ok=True)
        name = f"{prefix}_{int(time.time() * 1000)}_{os.getpid()}.png"
        picture.save(os.path.join(folder, name))
        return [{"filename": name, "subfolder": "", "type": "temp"}]
    except Exception as error:  # a preview is a nicety
        log.debug("SafeText: no preview (%s)", error)
        return []


def state(stack: list[str], active: bool, file: str = "", strength: float = 0.0, mode: str = "", **extra: Any) -> dict:
    """What a node reports to the front end (``ui.safetext``) for its status line."""
    return {"active": bool(active), "file": file, "strength": float(strength), "mode": mode, "stack": stack, **extra}
