"""Forge and Forge Neo: SafeText on the text-processing engines, fingerprints from the original weights.

Read against Forge (``lllyasviel/stable-diffusion-webui-forge`` dfdcbab) and Forge Neo
(``Haoming02/sd-webui-forge-classic``, branch ``neo``). Both hold the text encoders in
``sd_model.forge_objects.clip.cond_stage_model`` (``clip_l`` / ``clip_h`` / ``clip_g``, each a module with a
transformers ``transformer``), and encode prompts through text-processing engines
(``sd_model.text_processing_engine``, SDXL ``..._l`` / ``..._g``; Forge's ``ClassicTextProcessingEngine``, Neo's
``ClipEngine``) whose ``encode_with_transformers(tokens)`` runs one encoder, as A1111's embedders do.

**Applying.** :func:`activate` puts the A1111 adapter's wrapper (:func:`.hijack.wrap`) on each engine: the
original pass, then the pass with ``W + s * delta`` (weight blend) or ``W + delta`` (embedding blend, then
``lerp``) swapped into the encoder's parameter slots (:class:`safetext_core.weights.ShiftPlan`, restored even
on error, nothing edited in place). So both blend modes run as asked on both hosts, the infotext names the mode
that ran, and nothing depends on the hosts' patchers, which differ: Forge's ``add_patches(*, filename,
patches, strength_patch)`` vs Neo's port of ComfyUI's ``add_patches(patches, strength_patch)``. Both patchers
also drop a patch of the CLIP-L token embedding without a word (Forge: seen with its own classes,
``tests/integration/test_forge_classes.py``; Neo: by reading its source): the engines wrap it in a textual-inversion
module whose ``weight`` is the inner embedding's parameter, which the patchers replace on the wrapper while the
forward reads the inner one. SafeText's differences go to the inner name (:func:`engine_deltas`).

**Original weights.** A LoRA the user applies is written into the text encoder by the host's patcher (Forge:
in place, lazily, originals in ``lora_loader.backup``; Neo: ComfyUI-style, originals in ``patcher.backup`` as
``(weight, inplace_update)`` records). Fingerprints read those backups (:func:`original_state`), so a file made
for the checkpoint fits whatever LoRA was applied last, and training (:func:`training_states`) starts from the
checkpoint's own encoders.
"""
from __future__ import annotations

import contextlib
import weakref
from typing import Any

import torch

from safetext_core.errors import SafeTextFileError, UnsupportedModel
from safetext_core.families import FAMILIES, family_by_encoders
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.models import normalise_hf_clip_keys
from safetext_core.safetext_file import SafeTextFile

from . import hijack
from .args import Settings

# CLIP encoders only: the T5 / LLM families (Flux, SD 3, Chroma, Lumina 2, the Qwens) are not wired into Forge yet.
ENCODERS = tuple(dict.fromkeys(spec.name for family in FAMILIES.values() if family.diffusion
                               for spec in family.encoders if spec.kind == "clip"))
OTHER_ENCODERS = tuple(dict.fromkeys(spec.name for family in FAMILIES.values() if family.diffusion
                                     for spec in family.encoders if spec.kind != "clip"))
# Named in the refusals; read off the family table, so a new family is named without another edit here.
OTHER_FAMILIES = ", ".join(family.title for family in FAMILIES.values() if family.diffusion
                           and any(spec.kind != "clip" for spec in family.encoders))
ENGINE_ATTRIBUTES = ("text_processing_engine", "text_processing_engine_l", "text_processing_engine_g")

_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, str]]" = weakref.WeakKeyDictionary()


def is_forge(sd_model: Any) -> bool:
    return hasattr(sd_model, "forge_objects")


def _backup_tensor(value: Any) -> torch.Tensor | None:
    """A patcher backup entry as a tensor: Forge keeps tensors, ComfyUI-style patchers ``(weight, inplace)``."""
    if isinstance(value, torch.Tensor):
        return value
    weight = getattr(value, "weight", None)
    return weight if isinstance(weight, torch.Tensor) else None


def original_state(clip: Any) -> dict[str, torch.Tensor]:
    """``clip``'s text-encoder weights with the patchers' backups in place of the weights patched now."""
    state = clip.cond_stage_model.state_dict()
    patcher = getattr(clip, "patcher", None)
    sources = (getattr(getattr(clip.cond_stage_model, "lora_loader", None), "backup", None),
               getattr(getattr(patcher, "lora_loader", None), "backup", None),
               getattr(patcher, "backup", None))
    for backup in sources:
        if not isinstance(backup, dict):
            continue
        for key, value in backup.items():
            tensor = _backup_tensor(value)
            if key in state and tensor is not None:
                state[key] = tensor
    return state


def encoder_states(clip: Any) -> dict[str, dict[str, torch.Tensor]]:
    """``{encoder: its original weights in transformers naming}`` (``text_model.…``) for a Forge CLIP."""
    state = original_state(clip)
    out = {}
    for encoder in ENCODERS:
        prefix = f"{encoder}.transformer."
        # the textual-inversion wrapper's inner name for the token embedding is the same tensor again
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and ".wrapped." not in k}
        if sub:
            out[encoder] = normalise_hf_clip_keys(sub)
    return out


def _other_encoders(clip: Any) -> list[str]:
    """The T5 / LLM encoders (``t5xxl``, ``gemma2_2b``, the Qwens) a Forge CLIP holds, which this adapter does not
    handle."""
    return sorted({key.split(".", 1)[0] for key in clip.cond_stage_model.state_dict()} & set(OTHER_ENCODERS))


def training_states(sd_model: Any) -> tuple[str, dict[str, dict[str, torch.Tensor]]]:
    """The loaded checkpoint's family and original encoder weights (float32 copies on the CPU) for training."""
    clip = original_clip(sd_model)
    others = _other_encoders(clip)
    if others:  # e.g. Flux: its CLIP-L alone would pass for SD 1.x
        raise UnsupportedModel(f"this Forge model has a {', '.join(others)} text encoder (one of {OTHER_FAMILIES}): "
                               "SafeText trains those in ComfyUI and from the command line, not in Forge yet")
    states = {name: {k: v.detach().to("cpu", torch.float32) for k, v in state.items()}
              for name, state in encoder_states(clip).items()}
    family = family_by_encoders(states)
    if family is None:
        raise UnsupportedModel("SafeText trains for SD 1.x, SD 2.x and SDXL checkpoints; this Forge model has text "
                               f"encoders {sorted(states) or 'it does not recognise'}")
    return family, states


def clip_fingerprints(clip: Any) -> dict[str, str]:
    """``{encoder: fingerprint}`` of the original weights behind a Forge CLIP (cached per text-encoder module)."""
    module = clip.cond_stage_model
    try:
        cached = _FINGERPRINTS.get(module)
    except TypeError:  # not weak-referenceable
        cached = None
    if cached is not None:
        return dict(cached)
    out = {encoder: fingerprint_state_dict(state) for encoder, state in encoder_states(clip).items()}
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


def engines(sd_model: Any) -> dict[str, Any]:
    """``{encoder: engine}``: the text-processing engines that encode prompts with CLIP-L / -H / -G."""
    out = {}
    for attribute in ENGINE_ATTRIBUTES:
        engine = getattr(sd_model, attribute, None)
        name = getattr(engine, "embedding_key", None)
        if (name in ENCODERS and callable(getattr(engine, "encode_with_transformers", None))
                and isinstance(getattr(engine, "text_encoder", None), torch.nn.Module)):
            out[name] = engine
    return out


def engine_deltas(module: torch.nn.Module, encoder: str, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's canonical differences (``text_model.…``) under ``module``'s parameter names, as its forward
    reads them: ``transformer.text_model.…`` (``transformer.…`` in builds without ``text_model``), and the inner
    parameter of a wrapper that re-exposes it (the textual-inversion embedding's ``wrapped.weight``)."""
    params = dict(module.named_parameters(remove_duplicate=False))
    modules = dict(module.named_modules())
    out = {}
    for key, value in deltas.items():
        names = [f"transformer.{key}", f"transformer.{key.replace('text_model.', '', 1)}"]
        host = next((name for name in names if name in params), None)
        if host is None:
            raise SafeTextFileError(f"the file changes {key}, which the loaded {encoder} encoder does not have")
        owner_name, _, attribute = host.rpartition(".")
        inner = getattr(modules.get(owner_name), "wrapped", None)
        if isinstance(inner, torch.nn.Module) and isinstance(inner._parameters.get(attribute), torch.Tensor):
            host = f"{owner_name}.wrapped.{attribute}"  # what the wrapper's forward reads, whatever its own slot holds
        if tuple(params[host].shape) != tuple(value.shape):
            raise SafeTextFileError(f"the file's {key} has shape {tuple(value.shape)}, the loaded {encoder} "
                                    f"encoder's {tuple(params[host].shape)}: the file is for another model")
        out[host] = value
    return out


def activate(p: Any, file: SafeTextFile, settings: Settings) -> None:
    """Make ``file`` (already checked against the loaded fingerprints) act on the job's prompt encoding, in the
    mode ``settings`` asks for, until :func:`.hijack.deactivate`."""
    others = _other_encoders(original_clip(p.sd_model))
    if others:  # Flux's CLIP-L is SD 1.x's: an SD 1.x file would pass its check and leave T5 unprotected
        raise UnsupportedModel(f"this Forge model has a {', '.join(others)} text encoder (one of {OTHER_FAMILIES}), "
                               "which SafeText does not reach in Forge yet; nothing was generated")
    found = engines(p.sd_model)
    missing = [name for name in file.deltas if name not in found]
    if not found or missing:
        raise UnsupportedModel(
            f"SafeText cannot reach the {', '.join(missing or list(file.deltas))} text encoder(s) of this "
            "Forge model (no text-processing engine for them); nothing was generated")
    deltas, modules = {}, {}
    for name, engine in found.items():
        hijack.wrap(engine, name)
        modules[name] = engine.text_encoder
        deltas[name] = engine_deltas(engine.text_encoder, name, file.deltas.get(name, {}))
    hijack.activate_modules(settings, file, deltas, modules)


def load_checkpoint(queue_held: bool = False) -> None:
    """Forge: load the selected checkpoint now, in the queue with generation (Forge otherwise loads it per job).
    ``queue_held``: the caller already holds the webui's queue lock (training does)."""
    try:
        from modules import sd_models
        from modules.call_queue import queue_lock
    except ImportError:
        return
    reload = getattr(sd_models, "forge_model_reload", None)
    if reload is None:
        return
    with contextlib.nullcontext() if queue_held else queue_lock:
        try:
            reload()
        except ValueError:  # Forge's "You do not have any model!"
            pass


def forget_fingerprints() -> None:
    _FINGERPRINTS.clear()
