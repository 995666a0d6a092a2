"""ComfyUI ``CLIP`` objects to and from the SafeText core.

ComfyUI's CLIP (``comfy.sd.CLIP``) holds a ``cond_stage_model`` whose state dict is named
``<encoder>.transformer.<transformers name>`` (``clip_l.transformer.text_model.encoder.layers.0...``),
with ``clip_l`` / ``clip_h`` / ``clip_g`` sub-modules of type ``SDClipModel``, and a ``ModelPatcher``
(``clip.patcher``) that applies weight patches and object patches whenever the model is loaded.

Applying a SafeText file never changes the shared ``cond_stage_model``:

* **weight blend**: ``clip.clone()`` + ``add_patches({key: ("diff", (delta,))}, strength)``, the same
  mechanism as ComfyUI's LoRA loader, so it survives clones and stacks with LoRAs;
* **embedding blend**: an *object patch* of ``<encoder>._forward_hooks`` (the sub-module's forward-hook
  table) with a table that holds one more hook. The patcher installs it each time the CLIP is loaded
  and restores the original table afterwards, it is copied by ``clip.clone()`` (so CLIPSetLastLayer, LoRA
  loaders and every text-encode node downstream keep it) and it sees the output of the encoder as the
  conditioning uses it: whatever layer CLIPSetLastLayer chose, per 77-token chunk of a long prompt, before
  prompt weighting (which is linear, so blending before or after it is the same). The hook runs the
  encoder once more with ``W + delta`` substituted for ``W`` (``torch.func.functional_call``; ``W`` is the
  weight as currently loaded, so a LoRA applied after the node still applies) and returns
  ``lerp(E(x), E'(x), s)``.
"""
from __future__ import annotations

import functools
import itertools
import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any, Mapping

import torch

from ..safetext_core import blend as core_blend
from ..safetext_core.fingerprint import fingerprint_state_dict
from ..safetext_core.safetext_file import SafeTextFile, SafeTextFileError

log = logging.getLogger("safetext")

ENCODER_NAMES = ("clip_l", "clip_h", "clip_g")
FAMILY_BY_ENCODERS = {("clip_l",): "sd1", ("clip_h",): "sd2", ("clip_g", "clip_l"): "sdxl"}
# Tensors ComfyUI builds but the family does not consume: CLIP-L's projection is not in SD 1.x / SDXL
# checkpoints (ComfyUI leaves it uninitialised), and logit_scale belongs to the contrastive head.
IGNORED = ("logit_scale", "position_ids")


class UnsupportedClip(ValueError):
    """A CLIP that SafeText cannot work with (another model family, no text encoder...)."""


# --------------------------------------------------------------------------------------------- reading

def _encoders_in(keys) -> list[str]:
    found = set()
    for key in keys:
        head = key.split(".", 1)[0]
        if head in ENCODER_NAMES or head in ("t5xxl", "t5xl", "llama", "umt5xxl", "gemma", "qwen25_7b"):
            found.add(head)
    return sorted(found)


def family_of(clip: Any) -> str:
    """``sd1``, ``sd2`` or ``sdxl`` from the encoders the CLIP holds; anything else is refused by name."""
    model = getattr(clip, "cond_stage_model", None)
    if model is None:
        raise UnsupportedClip("this CLIP has no text encoder (was the checkpoint loaded without one?)")
    encoders = _encoders_in(model.state_dict().keys())
    family = FAMILY_BY_ENCODERS.get(tuple(encoders))
    if family is None:
        raise UnsupportedClip(
            f"SafeText supports the text encoders of SD 1.x (clip_l), SD 2.x (clip_h) and SDXL (clip_l + clip_g); "
            f"this CLIP has {', '.join(encoders) or 'no known encoder'}")
    return family


def base_state_dicts(clip: Any, family: str | None = None, only: tuple[str, ...] | None = None
                     ) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint's own encoder weights in transformers naming, per encoder.

    Weight patches (LoRAs) that ComfyUI may currently have written into the shared model are undone by
    reading the patcher's backups: the result is always the checkpoint's original encoder, which is what
    SafeText files are made for and fingerprinted against. ``only`` limits the result to some tensor names
    (relative to the encoder, e.g. for fingerprints).
    """
    family = family or family_of(clip)
    state = clip.cond_stage_model.state_dict()
    patcher = getattr(clip, "patcher", None)
    backups: dict[str, Any] = {}
    for table in (getattr(patcher, "backup", None) or {}, getattr(patcher, "hook_backup", None) or {}):
        for key, value in table.items():
            backups.setdefault(key, value)
    out: dict[str, dict[str, torch.Tensor]] = {}
    from ..safetext_core.families import get_family

    for spec in get_family(family).encoders:
        prefix = f"{spec.name}.transformer."
        sd: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if name.endswith(IGNORED) or (name == "text_projection.weight" and spec.pooled_weight <= 0):
                continue
            if only is not None and name not in only:
                continue
            backup = backups.get(key)
            if backup is not None:
                value = backup[0] if isinstance(backup, tuple) else getattr(backup, "weight", backup)
            sd[name] = value
        if not sd:
            raise UnsupportedClip(f"this CLIP has no {spec.name} weights under {prefix!r}")
        out[spec.name] = sd
    return out


def tokenizer_folder() -> str | None:
    """ComfyUI's own CLIP vocabulary (``comfy/sd1_tokenizer``: vocab.json + merges.txt), so no other copy is needed."""
    import os

    try:
        import comfy.sd1_clip

        folder = os.path.join(os.path.dirname(os.path.realpath(comfy.sd1_clip.__file__)), "sd1_tokenizer")
        return folder if os.path.isfile(os.path.join(folder, "vocab.json")) else None
    except Exception:  # outside ComfyUI: the core finds a vocabulary itself
        return None


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str | None, pad_token: str):
    from ..safetext_core.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer(folder, pad_token=pad_token)  # building one takes seconds: keep it


def encoder_set(clip: Any, family: str | None = None, source: str = ""):
    """Frozen float32 copies of the CLIP's original encoders (a core ``EncoderSet``), on the CPU.

    Call inside ``torch.inference_mode(False)``: the copies must be ordinary tensors to train.
    """
    from ..safetext_core.families import get_family
    from ..safetext_core.loaders import encoders_from_state_dicts

    family = family or family_of(clip)
    folder = tokenizer_folder()
    tokenizers = {spec.name: _tokenizer(folder, spec.pad_token) for spec in get_family(family).encoders}
    states = {name: {k: v.detach().to("cpu") for k, v in sd.items()}
              for name, sd in base_state_dicts(clip, family).items()}
    return encoders_from_state_dicts(family, states, tokenizers, source=source or "ComfyUI CLIP")


_FINGERPRINTS: "weakref.WeakKeyDictionary[Any, dict[str, str]]" = weakref.WeakKeyDictionary()


def fingerprints(clip: Any, family: str | None = None) -> dict[str, str]:
    """Per-encoder fingerprints of the CLIP's original weights.

    Remembered per loaded text-encoder model (every clone shares it; its original weights never change, only
    patches come and go), so applying a file costs no re-reading of the embedding table.
    """
    family = family or family_of(clip)
    model = clip.cond_stage_model
    try:
        known = _FINGERPRINTS.get(model)
    except TypeError:  # not weak-referenceable: just compute
        known = None
    if known is None:
        states = base_state_dicts(clip, family)
        known = {name: fingerprint_state_dict(sd) for name, sd in states.items()}
        try:
            _FINGERPRINTS[model] = known
        except TypeError:
            pass
    return dict(known)


# --------------------------------------------------------------------------------------------- applying

_hook_ids = itertools.count(1 << 40)  # far above torch's own handle ids, so never confused with them


class EmbeddingBlendHook:
    """Forward hook for an ``SDClipModel``: ``lerp(E(x), E'(x), strength)`` with ``E' = E(W + delta)``."""

    def __init__(self, encoder: str, deltas: Mapping[str, torch.Tensor], strength: float, label: str = ""):
        self.encoder = encoder
        # SDClipModel's own parameter names: the transformer sits under ``transformer.``
        self.deltas = {f"transformer.{name}": tensor for name, tensor in deltas.items()}
        self.strength = float(strength)
        self.label = label
        self._local = threading.local()

    def __call__(self, module: torch.nn.Module, args: tuple, output: Any) -> Any:
        if getattr(self._local, "active", False):
            return None  # the aligned pass below calls the module again: leave that call alone
        self._local.active = True
        try:
            # The aligned encoder itself (W + delta); outputs are blended below, exact at every strength.
            aligned = torch.func.functional_call(module, self._shifted(module), args, strict=False)
        finally:
            self._local.active = False
        return core_blend.blend_outputs(output, aligned, self.strength)

    def _shifted(self, module: torch.nn.Module) -> dict[str, torch.Tensor]:
        """``W + delta`` in each weight's dtype and device, computed per call (no second copy is kept).

        (``safetext_core.blend.shifted_parameters`` reads ``weight._version`` for its cache key, which
        ComfyUI's inference-mode weights do not have; so the sum is formed here.)
        """
        params = dict(module.named_parameters())
        out = {}
        for name, delta in self.deltas.items():
            weight = params[name]
            out[name] = (weight.detach().float() + delta.to(weight.device, torch.float32)).to(weight.dtype)
        return out

    def __getstate__(self) -> dict:  # deepcopy/pickle of a patched model: everything but the thread-local flag
        state = dict(self.__dict__)
        state.pop("_local", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:  # shows up in ComfyUI's debug logs of object patches
        return f"SafeTextEmbeddingBlend({self.label or self.encoder}, strength={self.strength})"


def hook_table_key(encoder: str) -> str:
    return f"{encoder}._forward_hooks"


def _current_hook_table(clip: Any, encoder: str) -> "OrderedDict[int, Any]":
    key = hook_table_key(encoder)
    patcher = clip.patcher
    if key in patcher.object_patches:
        return patcher.object_patches[key]
    backups = getattr(patcher, "object_patches_backup", {}) or {}
    if key in backups:
        return backups[key]
    return getattr(getattr(clip.cond_stage_model, encoder), "_forward_hooks")


def active_safetext(clip: Any) -> list[str]:
    """Labels of the SafeText files applied to ``clip`` (embedding hooks and weight patches)."""
    labels = []
    for encoder in ENCODER_NAMES:
        table = getattr(clip, "patcher", None) and clip.patcher.object_patches.get(hook_table_key(encoder))
        for hook in (table or {}).values():
            if isinstance(hook, EmbeddingBlendHook):
                labels.append(hook.label or encoder)
    labels += list(getattr(clip, "safetext_weight_patches", []))
    return sorted(set(labels))


def check_family(file: SafeTextFile, family: str) -> None:
    if file.family != family:
        from ..safetext_core.families import get_family

        raise SafeTextFileError(
            f"SafeText file {file.name!r} is for {get_family(file.family).title} ({file.family}), but this CLIP is "
            f"{get_family(family).title} ({family}); pick a file trained for this checkpoint")


def apply_file(clip: Any, file: SafeTextFile, strength: float = 1.0, mode: str = "embedding",
               override_fingerprint: bool = False, family: str | None = None) -> tuple[Any, list[str]]:
    """A clone of ``clip`` with ``file`` applied; returns ``(clip, warnings)``. ``clip`` itself is unchanged."""
    strength = core_blend.check_strength(strength)
    mode = core_blend.check_mode(mode)
    family = family or family_of(clip)
    check_family(file, family)
    warnings = file.check_fingerprints(fingerprints(clip, family), override=override_fingerprint)
    out = clip.clone()
    label = f"{file.name} {strength:g} {mode}"
    if mode == "weight":
        patches = {f"{encoder}.transformer.{name}": ("diff", (tensor,))
                   for encoder, params in file.deltas.items() for name, tensor in params.items()}
        added = set(out.add_patches(patches, strength))
        missing = sorted(set(patches) - added)
        if missing:
            raise SafeTextFileError(f"SafeText file {file.name!r} changes {len(missing)} tensors this CLIP does not have, "
                                    f"e.g. {missing[:2]}")
        # ComfyUI's CLIP.clone() drops unknown attributes; that only loses this label, never the patches.
        out.safetext_weight_patches = list(getattr(clip, "safetext_weight_patches", [])) + [label]
        return out, warnings
    model = clip.cond_stage_model
    for encoder, deltas in file.deltas.items():
        sub = getattr(model, encoder, None)
        if sub is None:
            raise SafeTextFileError(f"this CLIP has no {encoder} encoder, which SafeText file {file.name!r} changes")
        own = dict(sub.named_parameters())
        stray = [n for n in deltas if f"transformer.{n}" not in own]
        if stray:
            raise SafeTextFileError(f"SafeText file {file.name!r} changes {len(stray)} tensors the {encoder} encoder "
                                    f"does not have, e.g. {stray[:2]}")
        table = OrderedDict(_current_hook_table(out, encoder))
        table[next(_hook_ids)] = EmbeddingBlendHook(encoder, deltas, strength, label)
        out.patcher.add_object_patch(hook_table_key(encoder), table)
    return out, warnings
