"""Forge: a SafeText file as weight patches on a clone of the ComfyUI-style CLIP object, for one job.

Forge holds the text encoders in ``sd_model.forge_objects.clip`` (keys ``clip_l.transformer.text_model.*``).
:func:`activate` clones it, adds the file's differences as patches (``add_patches(filename=, patches=,
strength_patch=)``, the patches from :func:`safetext_core.hosting.comfy_patches`), swaps the clone in for the
job, and :func:`restore` swaps the original back. This is always a weight blend (``W + s * delta``).

Forge applies patches lazily and in place: when a CLIP is loaded for encoding, its ``lora_loader`` (shared by
every clone) restores the weights it patched last from ``lora_loader.backup`` and patches them again. Until
the next load the text encoder keeps the *previous* job's weights, SafeText's included, so fingerprints are
read from those backups (:func:`original_state`), never from the live weights.
"""
from __future__ import annotations

import os
import weakref
from typing import Any

import torch

from safetext_core.families import FAMILIES
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.hosting import comfy_patches
from safetext_core.models import normalise_hf_clip_keys
from safetext_core.safetext_file import SafeTextFile

ENCODERS = tuple(dict.fromkeys(spec.name for family in FAMILIES.values() if family.diffusion
                               for spec in family.encoders))
MODE = "weight"  # what Forge's patches compute, whatever blend mode was asked for

_restore: list[tuple[Any, Any]] = []  # (forge_objects, the clip that was there before the job)
_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, str]]" = weakref.WeakKeyDictionary()


def is_forge(sd_model: Any) -> bool:
    return hasattr(sd_model, "forge_objects")


def original_state(clip: Any) -> dict[str, torch.Tensor]:
    """``clip``'s text-encoder weights with Forge's LoRA backups in place of the weights patched now."""
    state = clip.cond_stage_model.state_dict()
    loader = getattr(clip.cond_stage_model, "lora_loader", None) or getattr(getattr(clip, "patcher", None),
                                                                              "lora_loader", None)
    backup = getattr(loader, "backup", None) or {}
    state.update({key: value for key, value in backup.items() if key in state})
    return state


def clip_fingerprints(clip: Any) -> dict[str, str]:
    """``{encoder: fingerprint}`` of the original weights behind a Forge CLIP (cached per text-encoder module)."""
    module = clip.cond_stage_model
    try:
        cached = _FINGERPRINTS.get(module)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None:
        return dict(cached)
    state = original_state(clip)
    out = {}
    for encoder in ENCODERS:
        prefix = f"{encoder}.transformer."
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if sub:
            out[encoder] = fingerprint_state_dict(normalise_hf_clip_keys(sub))
    try:
        _FINGERPRINTS[module] = dict(out)
    except TypeError:
        pass
    return out


def original_clip(sd_model: Any) -> Any:
    """The checkpoint's own CLIP object, not a job's clone (all of them share one text-encoder module)."""
    original = getattr(getattr(sd_model, "forge_objects_original", None), "clip", None)
    return original if original is not None else sd_model.forge_objects.clip


def loaded_fingerprints(sd_model: Any) -> dict[str, str]:
    return clip_fingerprints(original_clip(sd_model))


def _forge_patches(file: SafeTextFile, own: set[str]) -> dict[str, tuple]:
    """The file's patches under the clip's own keys (some Forge builds hold CLIP-L without ``text_model.``)."""
    out = {}
    for key, patch in comfy_patches(file).items():
        short = key.replace(".text_model.", ".", 1)
        out[short if key not in own and short in own else key] = patch
    return out


def patch_name(file: SafeTextFile) -> str:
    """The name the patches go under. Forge patches again only when the list of (name, strength) changes, so the
    name changes whenever the file on disk does (a file replaced under the same name is applied anew)."""
    try:
        stat = os.stat(file.path)
    except (OSError, TypeError):
        return f"{file.name}@{id(file)}"
    return f"{file.name}@{stat.st_mtime_ns}:{stat.st_size}"


def activate(p: Any, file: SafeTextFile, strength: float) -> None:
    """Swap in a clone of the job's CLIP with ``file``'s differences at ``strength``, until :func:`restore`."""
    objects = p.sd_model.forge_objects
    clip = objects.clip
    patched = clip.clone()
    patches = _forge_patches(file, set(patched.cond_stage_model.state_dict()))
    target = getattr(patched, "patcher", patched)
    try:
        target.add_patches(filename=patch_name(file), patches=patches, strength_patch=strength)
    except TypeError:  # ComfyUI's positional signature (older Forge builds)
        target.add_patches(patches, strength)
    _restore.append((objects, clip))
    objects.clip = patched


def is_active() -> bool:
    return bool(_restore)


def restore() -> None:
    """Put back every CLIP object a job swapped out."""
    while _restore:
        objects, clip = _restore.pop()
        objects.clip = clip


def load_checkpoint() -> None:
    """Forge: load the selected checkpoint now, in the queue with generation (Forge otherwise loads it per job)."""
    try:
        from modules import sd_models
        from modules.call_queue import queue_lock
    except ImportError:
        return
    reload = getattr(sd_models, "forge_model_reload", None)
    if reload is not None:
        with queue_lock:
            try:
                reload()
            except ValueError:  # Forge's "You do not have any model!"
                pass


def forget_fingerprints() -> None:
    _FINGERPRINTS.clear()
