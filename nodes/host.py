"""Everything the nodes need from ComfyUI itself, in one place.

ComfyUI's modules (``folder_paths``, ``comfy.model_management``, ``comfy.utils``, ``server``) are
imported lazily, inside each function: the node classes import without ComfyUI (unit tests give
stand-ins through ``sys.modules``) and nothing here runs before ComfyUI has set itself up.
"""
from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

log = logging.getLogger("safetext")

FOLDER = "safetext"  # models/safetext, registered with folder_paths
EXTENSIONS = {".safetensors"}
EVENT = "safetext.progress"  # websocket event the front end listens to


# --------------------------------------------------------------------------------------------- model folder

def register_folder() -> str:
    """Register ``models/safetext`` with ComfyUI's folder_paths (once); return its path."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    if FOLDER in folder_paths.folder_names_and_paths:
        paths, _ = folder_paths.folder_names_and_paths[FOLDER]  # e.g. from extra_model_paths.yaml
        if default not in paths:
            paths.append(default)
        folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))
    else:
        folder_paths.folder_names_and_paths[FOLDER] = ([default], set(EXTENSIONS))
    return default


def list_files() -> list[str]:
    """SafeText files in models/safetext (ComfyUI re-reads the folder when it changes)."""
    import folder_paths

    try:
        return sorted(folder_paths.get_filename_list(FOLDER))
    except KeyError:
        register_folder()
        return sorted(folder_paths.get_filename_list(FOLDER))


def full_path(name: str) -> str:
    """The file ``name`` chosen in a node's list, inside models/safetext; raises when it is not there."""
    import folder_paths

    check_name(name, must_exist=True)
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:
        raise FileNotFoundError(f"SafeText file {name!r} is not in {', '.join(folder_paths.get_folder_paths(FOLDER))}; "
                                "refresh the node list (R) or train one first")
    return path


_BAD_NAME = re.compile(r"[\x00-\x1f<>:\"|?*]")


def check_name(name: str, must_exist: bool = False) -> str:
    """Refuse names that could leave models/safetext: empty, ``..``, absolute, path separators, odd characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("give the SafeText file a name")
    text = name.strip()
    if must_exist and "/" in text.replace(os.sep, "/"):
        # files in sub-folders of models/safetext are listed as "sub/name.safetensors"
        parts = text.replace(os.sep, "/").split("/")
        if any(p in ("", ".", "..") for p in parts) or text.startswith(("/", "\\")) or os.path.isabs(text):
            raise ValueError(f"{name!r} is not a file name inside models/safetext")
        return text
    if "/" in text or "\\" in text or os.path.isabs(text):
        raise ValueError(f"the file name {name!r} must not contain a path: give a plain name, it is saved in models/safetext")
    if text in (".", "..") or text.startswith(".") or ".." in text:
        raise ValueError(f"the file name {name!r} must not start with a dot or contain '..'")
    if _BAD_NAME.search(text):
        raise ValueError(f"the file name {name!r} has characters that are not allowed in file names")
    return text


def output_path(name: str) -> str:
    """Where a new SafeText file called ``name`` goes: always directly inside models/safetext."""
    import folder_paths

    text = check_name(name)
    if not text.lower().endswith(".safetensors"):
        text += ".safetensors"
    if FOLDER not in folder_paths.folder_names_and_paths:
        register_folder()
    folder = os.path.realpath(folder_paths.get_folder_paths(FOLDER)[0])
    path = os.path.realpath(os.path.join(folder, text))
    if os.path.dirname(path) != folder:
        raise ValueError(f"the file name {name!r} would leave {folder}")
    os.makedirs(folder, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------- execution

def torch_device():
    import comfy.model_management as mm

    return mm.get_torch_device()


def interrupted() -> bool:
    import comfy.model_management as mm

    return bool(mm.processing_interrupted())


def raise_interrupted() -> None:
    """Let ComfyUI report the run as interrupted (its cancel button): raise its own exception."""
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()
    raise mm.InterruptProcessingException()


def is_interrupt(error: BaseException) -> bool:
    try:
        import comfy.model_management as mm
    except ImportError:
        return False
    return isinstance(error, mm.InterruptProcessingException)


def free_device_memory(required_bytes: int, device) -> None:
    """Make room on an accelerator before training (unloads other models as ComfyUI would)."""
    import comfy.model_management as mm

    if getattr(device, "type", str(device)) == "cpu":
        return
    try:
        mm.free_memory(required_bytes, device)
    except Exception as error:  # never fail a run over housekeeping
        log.warning("SafeText: could not free device memory first: %s", error)


def release_memory() -> None:
    import gc

    gc.collect()
    try:
        import comfy.model_management as mm

        mm.soft_empty_cache()
    except Exception:  # pragma: no cover - housekeeping only
        pass


class Progress:
    """ComfyUI's progress bar on the node plus a websocket event with step and loss for the front end."""

    def __init__(self, total: int, node_id: str | None = None, min_interval: float = 0.25):
        self.total = max(1, int(total))
        self.node_id = node_id
        self.min_interval = min_interval
        self._last = 0.0
        try:
            import comfy.utils

            self.bar = comfy.utils.ProgressBar(self.total, node_id=node_id)
        except Exception:  # pragma: no cover - outside ComfyUI
            self.bar = None

    def update(self, step: int, total: int | None = None, force: bool = False, **info: Any) -> None:
        if total:
            self.total = int(total)
        if self.bar is not None:
            self.bar.update_absolute(min(step, self.total), self.total)
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            send_event({"node": self.node_id, "step": int(step), "total": self.total, **info})


def send_event(data: dict, event: str = EVENT) -> None:
    try:
        from server import PromptServer

        instance = getattr(PromptServer, "instance", None)
        if instance is not None:
            instance.send_sync(event, data)
    except Exception:  # no server (unit tests, scripts): nothing to tell
        pass


def temp_image_dir() -> str:
    import folder_paths

    return folder_paths.get_temp_directory()
