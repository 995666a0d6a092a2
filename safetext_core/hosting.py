"""What every host adapter needs around SafeText files, written once: names, listing, caching, reuse, patches.

* **File names** from a UI or an API never leave the models folder: :func:`check_file_name` refuses paths,
  dots, control and reserved characters, Windows device names and names too long for the file system, and
  :func:`resolve_file` / :func:`new_file_path` resolve them inside the folder (symbolic links included); a
  new file's name is also kept short enough for the temporary files training writes next to it.
* **Listing** reads only each file's header (:func:`file_entry`): family, base checkpoint, fingerprint, and
  whether it fits the loaded checkpoint.
* **Caching**: :class:`FileCache` keeps the last few loaded files, keyed by path, size and modification time.
* **"Same training?"** (:func:`same_training`): the fields that define a training run, with fields a file's
  config lacks taken at their defaults, so adding a setting does not make every older file look different.
* **Weight patches** in the ComfyUI layout (:func:`comfy_patches`): every difference as a "diff" patch (the ComfyUI
  nodes patch a low-rank file's factors as ComfyUI's own LoRA patches instead, `nodes/comfy_clip.weight_patches`).
"""
from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from .errors import SafeTextError, SafeTextFileError
from .fingerprint import fingerprints_match, short_id
from .resume import LEGACY_VALUES
from .safetext_file import SafeTextFile

SUFFIX = ".safetensors"
MAX_NAME_BYTES = 255  # one path component, on every common file system
# A new file's name (suffix included): training also writes ".<name>.<pid>.<random>.partial" and, from the
# command line, "<name>.resume" and its partial, which must fit in 255 bytes too.
MAX_NEW_NAME_BYTES = 150
_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f<>:\"|?*\\]")
# Windows device names, with any extension and spaces before it ("CON.safetensors", "nul .x", "COM\u00b9").
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9\u00b9\u00b2\u00b3]|lpt[0-9\u00b9\u00b2\u00b3]|conin\$|conout\$)"
                              r"\s*(\..*)?$", re.IGNORECASE)
# Run-control settings: they change how a run is watched, never what it trains.
RUN_ONLY_FIELDS = frozenset({"checkpoint_every", "checkpoint_share"})


class FileNameError(SafeTextError, ValueError):
    """A file name from a UI or an API that SafeText will not use."""


def check_file_name(name: Any, *, sub_folders: bool = False) -> str:
    """``name`` (stripped, with ``.safetensors`` added when missing) if it is a safe name inside the folder.

    ``sub_folders`` allows ``sub/name.safetensors`` (as hosts list files in sub-folders); each part is then
    checked on its own. Raises :class:`FileNameError` saying what is wrong.
    """
    if not isinstance(name, str) or not name.strip():
        raise FileNameError("no SafeText file name given")
    text = name.strip()
    if text.startswith("/") or os.path.isabs(text) or re.match(r"^[A-Za-z]:", text):
        raise FileNameError(f"{name!r} is a path; give a file name inside the SafeText folder")
    parts = text.split("/") if sub_folders else [text]
    if not sub_folders and "/" in text:
        raise FileNameError(f"the file name {name!r} must not contain a path: give a plain name")
    if text.endswith("."):
        raise FileNameError(f"the file name {name!r} ends with a dot, which Windows drops; choose another")
    if not text.lower().endswith(SUFFIX):
        parts[-1] += SUFFIX
    for part in parts:
        if part in ("", ".", "..") or part.startswith("."):
            raise FileNameError(f"the file name {name!r} must not start with a dot or contain '..' or empty parts")
        if _BAD_CHARACTERS.search(part):
            raise FileNameError(f"the file name {name!r} has characters that are not allowed in file names")
        if _WINDOWS_DEVICES.match(part) or part.endswith((" ", ".")):
            raise FileNameError(f"the file name {name!r} is reserved on Windows; choose another")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise FileNameError(f"the file name {name[:40]!r}... is longer than {MAX_NAME_BYTES} bytes")
    return "/".join(parts)


def _inside(folder: Path, name: str) -> Path:
    root = Path(os.path.realpath(folder))
    path = Path(os.path.realpath(root / name))
    if root != path and root not in path.parents:
        raise FileNameError(f"the file name {name!r} would leave {root}")
    return path


def resolve_file(folder: str | os.PathLike, name: Any, *, sub_folders: bool = False) -> Path:
    """The existing SafeText file ``name`` inside ``folder``; :class:`SafeTextFileError` when it is not there."""
    checked = check_file_name(name, sub_folders=sub_folders)
    path = _inside(Path(folder), checked)
    if not path.is_file():
        raise SafeTextFileError(f"SafeText file {checked!r} not found in {folder}")
    return path


def new_file_path(folder: str | os.PathLike, name: Any) -> Path:
    """Where a new SafeText file called ``name`` goes: always directly inside ``folder`` (created if needed).

    Checked before any training starts: besides :func:`check_file_name`, the name (with its suffix) may have at
    most :data:`MAX_NEW_NAME_BYTES` bytes, so that the temporary files written next to it fit the file system.
    """
    checked = check_file_name(name)
    size = len(checked.encode("utf-8"))
    if size > MAX_NEW_NAME_BYTES:
        raise FileNameError(f"the file name {checked[:40]!r}... is {size} bytes long with its suffix; a new SafeText "
                            f"file's name may have at most {MAX_NEW_NAME_BYTES} (its temporary files add to it)")
    path = _inside(Path(folder), checked)
    if path.parent != Path(os.path.realpath(folder)):
        raise FileNameError(f"the file name {name!r} would leave {folder}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------------ listing

def read_header(path: str | os.PathLike) -> dict[str, str]:
    """A safetensors file's metadata only (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return handle.metadata() or {}


def header_fingerprints(meta: Mapping[str, str]) -> dict[str, str]:
    prefix = "safetext.fingerprint."
    return {k[len(prefix):]: v for k, v in meta.items() if k.startswith(prefix)}


def fits(file_fingerprints: Mapping[str, str], loaded: Mapping[str, str] | None) -> bool | None:
    """Whether a file with ``file_fingerprints`` was made for the loaded encoders (None: nothing loaded)."""
    if loaded is None:
        return None
    return bool(file_fingerprints) and all(e in loaded and fingerprints_match(fp, loaded[e])
                                           for e, fp in file_fingerprints.items())


def file_entry(path: str | os.PathLike, name: str, loaded: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """``{name, family, base, fingerprint, fits[, error]}`` for a listing; None for a non-SafeText file.

    A damaged file is listed with its ``error``, never fatal.
    """
    entry: dict[str, Any] = {"name": name, "fits": None, "family": None, "base": "", "fingerprint": None}
    try:
        meta = read_header(path)
    except Exception as error:  # safetensors raises several types for damaged files
        entry["error"] = f"damaged or not a safetensors file ({error})"
        return entry
    if "safetext.format" not in meta:
        return None
    prints = header_fingerprints(meta)
    entry["family"] = meta.get("safetext.family")
    entry["base"] = meta.get("safetext.base", "")
    entry["fingerprint"] = "+".join(short_id(prints[e]) for e in sorted(prints))
    entry["fits"] = fits(prints, loaded)
    return entry


def list_files(folder: str | os.PathLike, loaded: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every SafeText file directly in ``folder`` (sorted by name), with whether it fits ``loaded``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if path.is_file() and path.suffix.lower() == SUFFIX and not path.name.startswith("."):
            entry = file_entry(path, path.name, loaded)
            if entry is not None:
                out.append(entry)
    return out


class FileCache:
    """The last few SafeText files loaded, shared by a host's nodes or jobs; thread-safe.

    Keyed by real path, size and modification time, so a file is read again once it changes on disk.
    """

    def __init__(self, size: int = 4):
        self.size = size
        self._items: "OrderedDict[tuple, SafeTextFile]" = OrderedDict()
        self._lock = threading.Lock()

    def load(self, path: str | os.PathLike) -> SafeTextFile:
        try:
            stat = os.stat(path)
        except OSError:
            raise SafeTextFileError(f"SafeText file {path} does not exist") from None
        key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        file = SafeTextFile.load(path)
        with self._lock:
            self._forget(key[0])
            self._items[key] = file
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return file

    def forget(self, path: str | os.PathLike) -> None:
        with self._lock:
            self._forget(os.path.realpath(path))

    def _forget(self, real: str) -> None:
        for old in [k for k in self._items if k[0] == real]:
            del self._items[old]


# ------------------------------------------------------------------------------------------------ reuse

def same_training(file: SafeTextFile, config: Any, prompt_hashes: Mapping[str, str],
                  fingerprints: Mapping[str, str], family: str) -> bool:
    """Would training ``config`` on these prompts for these encoders make ``file`` again?

    Compares the family, the prompt-set hashes, the encoders' fingerprints and every setting of ``config``
    except run-control ones; a setting the file's config does not record counts as what training did before
    the setting existed (:data:`LEGACY_VALUES`, else its default).
    """
    if file.family != family or dict(file.prompt_hashes) != dict(prompt_hashes):
        return False
    if not set(fingerprints) <= set(file.fingerprints) or not all(
            fingerprints_match(file.fingerprints[e], fingerprints[e]) for e in fingerprints):
        return False
    saved, defaults = file.config or {}, type(config)()
    for spec in fields(config):
        if spec.name in RUN_ONLY_FIELDS or (spec.name == "lowrank_method" and not config.rank):
            continue  # (how factors are made means nothing to a full-weight file)
        old = saved.get(spec.name, LEGACY_VALUES.get(spec.name, getattr(defaults, spec.name)))
        new = getattr(config, spec.name)
        if isinstance(new, tuple):
            old = tuple(old) if isinstance(old, (list, tuple)) else old
        if old != new:
            return False
    return True


# ------------------------------------------------------------------------------------------------ patches

def comfy_patches(file: SafeTextFile, encoders: Mapping[str, Any] | None = None) -> dict[str, tuple]:
    """ComfyUI-style weight patches ``{"clip_l.transformer.<name>": ("diff", (delta,))}``, every difference expanded.

    ``encoders`` maps a file's encoder name to the host's, where they differ.
    """
    renamed = dict(encoders or {})
    return {f"{renamed.get(encoder, encoder)}.transformer.{name}": ("diff", (delta,))
            for encoder, params in file.deltas.items() for name, delta in params.items()}


__all__ = ["SUFFIX", "MAX_NEW_NAME_BYTES", "FileNameError", "check_file_name", "resolve_file", "new_file_path", "read_header",
           "header_fingerprints", "fits", "file_entry", "list_files", "FileCache", "same_training", "comfy_patches"]
