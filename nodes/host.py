"""Everything the nodes need from ComfyUI itself, in one place: the model folder, devices, cancel, progress.

ComfyUI's modules (``folder_paths``, ``comfy.model_management``, ``comfy.utils``, ``server``) are imported
lazily, inside each function: the node classes import without ComfyUI (unit tests give stand-ins through
``sys.modules``) and nothing here runs before ComfyUI has set itself up. File-name rules come from the core
(:mod:`safetext_core.hosting`), the same rules the A1111/Forge extension applies.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from safetext_core.errors import SafeTextError, SafeTextFileError
from safetext_core.hosting import SUFFIX, check_file_name, new_file_path

log = logging.getLogger("safetext")

FOLDER = "safetext"  # models/safetext, registered with folder_paths
EVENT = "safetext.progress"  # websocket event the front end listens to


# --------------------------------------------------------------------------------------------- model folder

def register_folder() -> str:
    """Register ``models/safetext`` with ComfyUI's folder_paths (once); return its path."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths = list(folder_paths.folder_names_and_paths.get(FOLDER, ([], None))[0])  # e.g. extra_model_paths.yaml
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, {SUFFIX})
    return default


def _folder_paths():
    import folder_paths

    if FOLDER not in folder_paths.folder_names_and_paths:
        register_folder()
    return folder_paths


def list_files() -> list[str]:
    """SafeText files in models/safetext and its sub-folders (ComfyUI re-reads the folder when it changes)."""
    return sorted(_folder_paths().get_filename_list(FOLDER))


def _listed_name(name: Any) -> str:
    """A name as the node lists it, checked (sub-folders allowed; ComfyUI lists them with os.sep on Windows)."""
    text = name.replace("\\", "/") if isinstance(name, str) and os.sep == "\\" else name
    return check_file_name(text, sub_folders=True)


def full_path(name: Any) -> str:
    """The file ``name`` chosen in a node's list, inside models/safetext; a clear error when it is not there."""
    folder_paths = _folder_paths()
    checked = _listed_name(name)
    path = folder_paths.get_full_path(FOLDER, checked)
    if path is None:
        raise SafeTextFileError(f"SafeText file {checked!r} is not in {', '.join(folder_paths.get_folder_paths(FOLDER))}; "
                                "train one with the SafeText Train node, or pick another and refresh the list (R)")
    return path


def exists(name: Any) -> bool:
    try:
        full_path(name)
        return True
    except SafeTextError:  # not there, or not a name SafeText reads
        return False


def output_path(name: Any) -> str:
    """Where a new SafeText file called ``name`` goes: always directly inside the first models/safetext folder."""
    return str(new_file_path(_folder_paths().get_folder_paths(FOLDER)[0], name))


def temp_image_dir() -> str:
    import folder_paths

    return folder_paths.get_temp_directory()


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
    """ComfyUI's cancel exception (an ``Exception`` in 0.3.64, a ``BaseException`` in current ComfyUI)."""
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
        self._phase: Any = None
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
        phase = info.get("phase")
        # At most one event per interval, but the first of each phase always goes out (a fast run's steps would
        # otherwise all fall in the interval after the last "originals" event and the page would never see one).
        if force or phase != self._phase or now - self._last >= self.min_interval:
            self._last, self._phase = now, phase
            send_event({"node": self.node_id, "step": int(step), "total": self.total, **info})


def send_event(data: dict, event: str = EVENT) -> None:
    try:
        from server import PromptServer

        instance = getattr(PromptServer, "instance", None)
        if instance is not None:
            instance.send_sync(event, data)
    except Exception:  # no server (unit tests, scripts): nothing to tell
        pass


# --------------------------------------------------------------------------------------------- drawing pictures
# What the image evaluation node needs from ComfyUI: encode with a CLIP, sample with the graph's MODEL, decode
# with its VAE, the sampler lists and the output folder. Kept here so the node itself stays host-neutral.

def sampler_choices() -> tuple[list[str], list[str]]:
    """ComfyUI's sampler and scheduler names (a short fallback when imported outside ComfyUI)."""
    try:
        import comfy.samplers

        return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)
    except (ImportError, AttributeError):
        return ["euler"], ["normal"]


def encode(clip: Any, text: str) -> Any:
    """Conditioning of ``text`` as CLIPTextEncode makes it."""
    tokens = clip.tokenize(text)
    if hasattr(clip, "encode_from_tokens_scheduled"):
        return clip.encode_from_tokens_scheduled(tokens)
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)  # ComfyUI before the scheduled encode
    return [[cond, {"pooled_output": pooled}]]


def draw(model: Any, vae: Any, positive: Any, negative: Any, seed: int, steps: int, cfg: float, sampler_name: str,
         scheduler: str, size: int) -> Any:
    """One picture as KSampler (full denoise of an empty latent) and VAE Decode make it, as a PIL image."""
    import comfy.sample
    import numpy as np
    import torch
    from PIL import Image

    latent = torch.zeros([1, 4, size // 8, size // 8])
    if hasattr(comfy.sample, "fix_empty_latent_channels"):
        latent = comfy.sample.fix_empty_latent_channels(model, latent)
    noise = comfy.sample.prepare_noise(latent, int(seed))
    samples = comfy.sample.sample(model, noise, int(steps), float(cfg), sampler_name, scheduler, positive, negative,
                                  latent, denoise=1.0, disable_pbar=True, seed=int(seed))
    pixels = vae.decode(samples)
    while pixels.dim() > 4:  # video VAEs add a frame axis
        pixels = pixels.flatten(0, 1)
    # as SaveImage writes it (scaled, clipped, truncated), so a picture here equals the graph's saved one
    array = np.clip(255.0 * pixels[0].detach().float().cpu().numpy(), 0, 255).astype(np.uint8)
    return Image.fromarray(array)


def weights_identity(model: Any) -> str:
    """A short id of a MODEL's or VAE's weights and patches, for the picture cache; unique when unreadable."""
    import uuid

    from safetext_core.fingerprint import fingerprint_state_dict, short_id

    try:
        inner = next((m for m in (getattr(model, "model", None), getattr(model, "first_stage_model", None))
                      if m is not None), model)
        return short_id(fingerprint_state_dict(inner.state_dict())) + ":" + str(getattr(model, "patches_uuid", ""))
    except Exception:  # weights not readable here (offloaded, meta): never reuse pictures for it
        return f"unreadable-{uuid.uuid4()}"


def eval_output_dir(file_name: str) -> str:
    """``output/safetext_eval/<file>`` in ComfyUI's output folder: the pictures, sheet, report and figures."""
    import folder_paths

    safe_name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(file_name))[:120] or "safetext"
    return os.path.join(folder_paths.get_output_directory(), "safetext_eval", safe_name)
