"""ComfyUI ``CLIP`` objects to and from the SafeText core: family, original weights, fingerprints, applying.

ComfyUI's CLIP (``comfy.sd.CLIP``) holds a ``cond_stage_model`` whose state dict is named
``<encoder>.transformer.<transformers name>`` (``clip_l.transformer.text_model.encoder.layers.0...``,
``t5xxl.transformer.encoder.block.0...``, ``gemma2_2b.transformer.model.layers.0...``), with ``clip_l`` /
``clip_h`` / ``clip_g`` / ``t5xxl`` / ``gemma2_2b`` sub-modules of type ``SDClipModel``, and a ``ModelPatcher``
(``clip.patcher``) that applies weight patches, weight wrappers and object patches whenever it loads the model.

Applying a SafeText file never changes the shared ``cond_stage_model``; it only adds ComfyUI patches to a clone,
which survive later clones (CLIP Set Last Layer, LoRA loaders, every text-encode node):

* **weight blend**: ``add_patches({key: ("diff", (delta,))}, strength)``, the mechanism of ComfyUI's LoRA loader;
* **embedding blend**: a forward hook on each changed encoder (an object patch of its ``_forward_hooks`` table)
  returns ``lerp(E(x), E'(x), s)``, where ``E'`` is the encoder run once more with SafeText's weight wrappers
  (``ModelPatcher.add_weight_wrapper``) and LayerNorm output hooks switched on. Every ComfyUI loader applies
  weight wrappers to the weight it computes with, LoRAs included; the hook fails closed
  (``SafeTextNotApplied``) when a changed module did not take part in the aligned pass.

(Over 400 lines: reading a CLIP and the two ways of applying a file to it share the same ComfyUI internals,
key names and patcher tables; the moderation signal and the enforced mode live in ``signals`` and ``enforce``.)
"""
from __future__ import annotations

import functools
import itertools
import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Mapping

import torch

from safetext_core import weights as core_weights
from safetext_core.errors import SafeTextFileError, SafeTextNotApplied, UnsupportedModel
from safetext_core.families import FAMILIES, families_by_encoders, get_family
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.lowrank import Expansions
from safetext_core.safetext_file import SafeTextFile

from . import signals

ENCODER_NAMES = ("clip_l", "clip_h", "clip_g", "t5xxl", "gemma2_2b", "qwen3_06b", "qwen3_4b", "qwen3_8b", "qwen25_7b")
# Families that share their encoders' names with other ComfyUI models are told apart by the class ComfyUI built
# for them (comfy/sd.py, load_text_encoder_state_dicts): a T5-only CLIP is Chroma's (and PixArt's: the same
# encoder and tokenizer) only when it is a PixArtT5XXL, not Mochi's, LTXV's or an SD 3 with T5 alone. A qwen3_4b is
# Z-Image's (z_image.te: ZImageTEModel) or Flux.2 Klein 4B's (flux.klein_te: Flux2TEModel, CLIP type flux / flux2);
# a qwen3_8b Klein 9B's, not Ideogram 4's; a qwen25_7b Qwen-Image's (qwen_image.te: QwenImageTEModel), not
# HunyuanImage's or LongCat-Image's (ComfyUI's current comfy/sd.py and text_encoders/*; the classes of Z-Image, Klein
# and Anima are not in ComfyUI 0.3.64, so only these names, not those hosts, were checked).
FAMILY_CLASSES = {"flux": "FluxClipModel", "sd3": "SD3ClipModel", "chroma": "PixArtT5XXL", "lumina2": "LuminaModel",
                  "z_image": "ZImageTEModel", "flux2_klein_4b": "Flux2TEModel", "flux2_klein_9b": "Flux2TEModel",
                  "anima": "AnimaTEModel", "qwen_image": "QwenImageTEModel"}
# Tensors ComfyUI builds but the family does not consume: CLIP-L's projection is not in SD 1.x / SDXL
# checkpoints (ComfyUI leaves it uninitialised), and logit_scale belongs to the contrastive head.
IGNORED = ("logit_scale", "position_ids")


class UnsupportedClip(UnsupportedModel):
    """A CLIP that SafeText cannot work with (another model family, no text encoder...)."""


# --------------------------------------------------------------------------------------------- reading

def _encoders_in(keys) -> list[str]:
    found = set()
    for key in keys:
        head = key.split(".", 1)[0]
        if head in ENCODER_NAMES or head in ("t5xl", "t5base", "llama", "umt5xxl", "gemma", "gemma3_4b",
                                             "qwen25_3b", "byt5", "mt5xl"):
            found.add(head)
    return sorted(found)


def family_of(clip: Any) -> str:
    """The family from the encoders the CLIP holds (and, for the T5 / LLM families, the class ComfyUI built for
    them); anything else is refused by name."""
    model = getattr(clip, "cond_stage_model", None)
    if model is None:
        raise UnsupportedClip("this CLIP has no text encoder (was the checkpoint loaded without one?)")
    encoders = _encoders_in(model.state_dict().keys())
    candidates = families_by_encoders(encoders)
    if not candidates:
        supported = ", ".join(f"{family.title} ({' + '.join(family.encoder_names)})" for family in FAMILIES.values()
                              if family.diffusion)  # read off the family table: a new family needs no edit here
        raise UnsupportedClip(f"SafeText supports the text encoders of {supported}; "
                              f"this CLIP has {', '.join(encoders) or 'no known encoder'}")
    built = [cls.__name__ for cls in type(model).__mro__]
    matching = [family for family in candidates
                if not FAMILY_CLASSES.get(family) or any(name.startswith(FAMILY_CLASSES[family]) for name in built)]
    if len(matching) != 1:
        titles = " or ".join(get_family(family).title for family in candidates)
        raise UnsupportedClip(f"this CLIP holds {', '.join(encoders)} but is a {type(model).__name__}, not the "
                              f"{titles} text encoder; load it with CLIPLoader / DualCLIPLoader of that type")
    return matching[0]


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
    for spec in get_family(family).encoders:
        prefix = f"{spec.name}.transformer."
        sd: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            name = key[len(prefix):]
            if name.endswith(IGNORED) or (name == "text_projection.weight" and not
                                          ((spec.pooled_weight > 0 or spec.pooled_only) and spec.pooled_projected)):
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
    try:
        import comfy.sd1_clip

        folder = os.path.join(os.path.dirname(os.path.realpath(comfy.sd1_clip.__file__)), "sd1_tokenizer")
        return folder if os.path.isfile(os.path.join(folder, "vocab.json")) else None
    except Exception:  # outside ComfyUI: the core finds a vocabulary itself
        return None


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str | None, pad_token: str):
    from safetext_core.tokenizer import load_clip_tokenizer

    return load_clip_tokenizer(folder, pad_token=pad_token)  # building one takes seconds: keep it


class HostTokenizer:
    """ComfyUI's own tokenizer of a T5 / LLM encoder (``clip.tokenizer.<encoder>.tokenizer``) with the call the core
    makes: a batch of texts to padded ``input_ids`` and ``attention_mask``. A transformers tokenizer (T5's) is used
    as it is; this wraps the others (Gemma's ``SPieceTokenizer``: ``tokenizer(text)["input_ids"]``, ``get_vocab``)."""

    def __init__(self, tokenizer: Any, pad_id: int, max_length: int = 8192):
        self.tokenizer, self.pad_token_id, self.model_max_length = tokenizer, pad_id, max_length

    def __call__(self, texts: Any, padding: Any = False, truncation: bool = False, max_length: int | None = None,
                 return_tensors: str | None = None, **_: Any) -> dict[str, Any]:
        single = isinstance(texts, str)
        rows = [list(self.tokenizer(text)["input_ids"]) for text in ([texts] if single else texts)]
        if truncation and max_length:
            rows = [row[:max_length] for row in rows]
        if return_tensors is None:
            return {"input_ids": rows[0] if single else rows}
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[index, :len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def get_vocab(self) -> dict[str, int]:
        return dict(self.tokenizer.get_vocab())


def host_tokenizer(clip: Any, encoder: str) -> Any:
    """The tokenizer ComfyUI itself uses for ``encoder`` of ``clip`` (T5, Gemma-2), callable as the core calls it."""
    family_tokenizer = getattr(clip, "tokenizer", None)
    # FluxTokenizer / SD3Tokenizer / LuminaTokenizer name it after the encoder; PixArt's (Chroma) "clip_t5xxl".
    sd_tokenizer = getattr(family_tokenizer, encoder, None) or getattr(family_tokenizer, f"clip_{encoder}", None)
    inner = getattr(sd_tokenizer, "tokenizer", None)
    if inner is None:
        raise UnsupportedClip(f"this CLIP has no tokenizer for its {encoder} encoder")
    if callable(getattr(inner, "batch_decode", None)) and getattr(inner, "pad_token_id", None) is not None:
        return inner  # a transformers tokenizer (ComfyUI's T5TokenizerFast)
    return HostTokenizer(inner, int(getattr(sd_tokenizer, "pad_token", 0) or 0))


def encoder_set(clip: Any, family: str | None = None, source: str = "", large_dtype: torch.dtype = torch.float32):
    """Frozen float32 copies of the CLIP's original encoders (a core ``EncoderSet``), on the CPU; a T5 / LLM encoder
    in ``large_dtype`` (``memory.original_dtype`` of the run).

    Call inside ``torch.inference_mode(False)``: the copies must be ordinary tensors to train.
    """
    from safetext_core.loaders import encoders_from_state_dicts

    family = family or family_of(clip)
    folder = tokenizer_folder()
    tokenizers = {spec.name: _tokenizer(folder, spec.pad_token) if spec.kind == "clip" else host_tokenizer(clip, spec.name)
                  for spec in get_family(family).encoders}
    states = {name: {k: v.detach().to("cpu") for k, v in sd.items()}
              for name, sd in base_state_dicts(clip, family).items()}
    return encoders_from_state_dicts(family, states, tokenizers, source=source or "ComfyUI CLIP",
                                     large_dtype=large_dtype)


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

# Parameters ComfyUI's CLIP reads directly (``comfy.ops.cast_to(position_embedding.weight)``), outside the
# weight-function path: the embedding blend cannot change them, so a file that does is refused for it.
_OUTSIDE_WEIGHT_FUNCTIONS = ("position_embedding.weight",)


class _Gate(threading.local):
    """Per thread: is this hook's aligned pass running, and which changed modules took part in it."""

    def __init__(self) -> None:
        self.active = False
        self.applied: set[str] = set()


class AlignedDelta:
    """A ComfyUI weight wrapper (``ModelPatcher.add_weight_wrapper``): ``W`` as it is, except during its hook's
    aligned pass, where it returns ``W + delta``.

    Weight wrappers are how ComfyUI itself changes weights at run time: every loader (full, low-VRAM and the
    Dynamic VRAM loader of current versions) puts them in the module's ``weight_function`` list, which the
    cast path applies to whatever copy of the weight it computes with. Substituting parameters behind the
    host's back does not survive a loader that computes from its own cached copy.
    """

    def __init__(self, gate: _Gate, key: str, deltas: Mapping[str, torch.Tensor], name: str):
        # The file's mapping and the name, not the tensor: a low-rank file's differences are expanded when read
        # (one at a time, during the aligned pass), so a 2.6B encoder's 8 GB of expansions is never held at once.
        self.gate, self.key, self.deltas, self.name = gate, key, deltas, name

    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        gate = self.gate
        if not gate.active:
            return weight
        gate.applied.add(self.key)
        return (weight.float() + self.deltas[self.name].to(weight.device, torch.float32)).to(weight.dtype)

    def __repr__(self) -> str:
        return f"SafeTextAlignedDelta({self.key})"


def is_norm(module: torch.nn.Module) -> bool:
    """A LayerNorm, or an RMS norm of ComfyUI's T5 (``T5LayerNorm``) or LLMs (``RMSNorm``): modules that read their
    weight outside the weight-wrapper path."""
    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__ in ("T5LayerNorm", "RMSNorm")


class AlignedLayerNorm:
    """Forward hook (object patch of a LayerNorm's ``_forward_hooks``): during its hook's aligned pass, the
    LayerNorm's output recomputed with ``W + delta`` and ``b + delta_b``. RMS norms likewise:
    ``x / rms(x) * w`` (T5) or ``* (1 + w)`` (ComfyUI's ``RMSNorm(add=True)``, Gemma).

    LayerNorms get no weight wrappers on every loader (Dynamic VRAM force-loads modules under 16 KiB without
    them, with LoRA patches written into the weight instead), so for them the change is made on the output;
    ``module.weight`` there is the weight as loaded, LoRAs included.
    """

    def __init__(self, gate: _Gate, key: str, weight_delta: torch.Tensor | None, bias_delta: torch.Tensor | None):
        self.gate, self.key = gate, key
        self.weight_delta, self.bias_delta = weight_delta, bias_delta

    def __call__(self, module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        gate = self.gate
        if not gate.active:
            return None
        gate.applied.add(self.key)
        x = args[0]
        weight = None if module.weight is None else module.weight.detach().to(x.device, torch.float32)
        bias = getattr(module, "bias", None)  # RMS norms have none
        bias = None if bias is None else bias.detach().to(x.device, torch.float32)
        if self.weight_delta is not None:
            weight = weight + self.weight_delta.to(x.device, torch.float32)
        if self.bias_delta is not None:
            bias = bias + self.bias_delta.to(x.device, torch.float32)
        if not isinstance(module, torch.nn.LayerNorm):  # RMS norm: no bias, no mean
            eps = getattr(module, "variance_epsilon", None) or getattr(module, "eps", 1e-6)
            x = x.float()
            normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
            return (normed * (weight + 1.0 if getattr(module, "add", False) else weight)).to(output.dtype)
        out = torch.nn.functional.layer_norm(x.float(), module.normalized_shape, weight, bias, module.eps)
        return out.to(output.dtype)

    def __repr__(self) -> str:
        return f"SafeTextAlignedLayerNorm({self.key})"


class EmbeddingBlendHook:
    """Forward hook for an ``SDClipModel``: ``lerp(E(x), E'(x), strength)``.

    ``E'`` is the same module run once more with this hook's weight wrappers (``AlignedDelta``) and LayerNorm
    hooks (``AlignedLayerNorm``) switched on. ComfyUI's CLIP runs every layer on every pass (clip skip only picks
    an intermediate output), so each of them must take part in the aligned pass. The hook fails closed: if one
    did not, or the aligned output equals the original, the host bypassed the change and the hook raises
    ``SafeTextNotApplied`` rather than return unprotected conditioning.
    """

    def __init__(self, encoder: str, deltas: Mapping[str, torch.Tensor], strength: float, label: str = "",
                 layer_norms: tuple[str, ...] = (), enforced: bool = False):
        """``deltas``: transformers names in the encoder; ``layer_norms``: the names of its LayerNorm modules;
        ``enforced``: put there by the server's enforced mode (:mod:`.enforce`), not by a node."""
        self.encoder = encoder
        self.strength = float(strength)
        self.label = label
        self.enforced = bool(enforced)
        self._gate = _Gate()
        prefix = f"{encoder}.transformer."  # keys relative to the CLIP's cond_stage_model, as ComfyUI names them
        self.wrappers: dict[str, AlignedDelta] = {}
        self.layer_norm_hooks: dict[str, AlignedLayerNorm] = {}
        for name in deltas:
            module, _, kind = name.rpartition(".")
            if module in layer_norms:
                if module not in self.layer_norm_hooks:
                    self.layer_norm_hooks[module] = AlignedLayerNorm(
                        self._gate, prefix + module, deltas.get(module + ".weight"), deltas.get(module + ".bias"))
            else:
                self.wrappers[prefix + name] = AlignedDelta(self._gate, prefix + name, deltas, name)
        self.expected = set(self.wrappers) | {hook.key for hook in self.layer_norm_hooks.values()}

    def __call__(self, module: torch.nn.Module, args: tuple, output: Any) -> Any:
        gate = self._gate
        if gate.active:
            return None  # the aligned pass below calls the module again: leave that call alone
        gate.applied = set()
        gate.active = True
        try:
            aligned = module(*args)
        finally:
            gate.active = False
        applied, gate.applied = gate.applied, set()
        missed = self.expected - applied
        if missed or _same_tensors(output, aligned):
            raise SafeTextNotApplied(
                f"SafeText ({self.label or self.encoder}): this ComfyUI ran the {self.encoder} encoder without "
                f"SafeText's change ({len(self.expected) - len(missed)} of {len(self.expected)} changed modules took "
                f"part in the aligned pass{', missing e.g. ' + sorted(missed)[0] if missed else ''}); refusing to "
                "generate unprotected. Use blend mode 'weight', or report this with your ComfyUI version")
        blended = core_weights.blend_outputs(output, aligned, self.strength)
        signals.record(self, args, output, blended)  # the moderation signal: both outputs are at hand
        return blended

    def __getstate__(self) -> dict:  # deepcopy/pickle of a patched model: everything but the thread-local gate
        state = dict(self.__dict__)
        state.pop("_gate", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._gate = _Gate()
        for wrapper in [*self.wrappers.values(), *self.layer_norm_hooks.values()]:
            wrapper.gate = self._gate

    def __repr__(self) -> str:  # shows up in ComfyUI's debug logs of object patches
        return f"SafeTextEmbeddingBlend({self.label or self.encoder}, strength={self.strength})"


def _same_tensors(a: Any, b: Any) -> bool:
    """True when every floating-point tensor of two encoder outputs is identical (the change did nothing)."""
    first = [t for t in (a if isinstance(a, (tuple, list)) else (a,)) if isinstance(t, torch.Tensor)]
    second = [t for t in (b if isinstance(b, (tuple, list)) else (b,)) if isinstance(t, torch.Tensor)]
    pairs = [(x, y) for x, y in zip(first, second) if x.is_floating_point()]
    return bool(pairs) and all(x.shape == y.shape and torch.equal(x, y) for x, y in pairs)


def hook_table_key(module_path: str) -> str:
    return f"{module_path}._forward_hooks"


def _current_hook_table(clip: Any, module_path: str) -> "OrderedDict[int, Any]":
    """The forward-hook table ``module_path`` (in the CLIP's cond_stage_model) has once ``clip`` is loaded."""
    key = hook_table_key(module_path)
    patcher = clip.patcher
    if key in patcher.object_patches:
        return patcher.object_patches[key]
    backups = getattr(patcher, "object_patches_backup", {}) or {}
    if key in backups:
        return backups[key]
    return clip.cond_stage_model.get_submodule(module_path)._forward_hooks


def _add_forward_hook(clip: Any, module_path: str, hook: Any) -> None:
    """An object patch of the module's hook table with ``hook`` added: survives clones, undone on unload."""
    table = OrderedDict(_current_hook_table(clip, module_path))
    table[next(_hook_ids)] = hook
    clip.patcher.add_object_patch(hook_table_key(module_path), table)


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
        raise SafeTextFileError(
            f"SafeText file {file.name!r} is for {get_family(file.family).title} ({file.family}), but this CLIP is "
            f"{get_family(family).title} ({family}); pick a file trained for this checkpoint")


def lora_patch(up: torch.Tensor, down: torch.Tensor, alpha: float) -> Any:
    """ComfyUI's own patch for LoRA factors, as its LoRA loader makes it: ``W + strength * up @ down * alpha / rank``
    computed when the weight is patched (``comfy.weight_adapter.LoRAAdapter``; before weight adapters existed, the
    ``("lora", ...)`` tuple ComfyUI's ``calculate_weight`` read)."""
    weights = (up, down, float(alpha), None, None, None)  # up, down, alpha, mid, dora_scale, reshape
    try:
        from comfy.weight_adapter import LoRAAdapter
    except ImportError:
        return ("lora", weights)
    return LoRAAdapter(set(), weights)


def weight_patches(file: SafeTextFile) -> dict[str, Any]:
    """The weight blend's patches: full differences as ``("diff", ...)``; an encoder stored as low-rank factors as
    ComfyUI's LoRA patch of the same factors, so nothing is expanded ahead (a 2.6B encoder's expansions are 8 GB,
    kept as long as ComfyUI caches the node's output) and the blend is exactly what stock LoraLoader applies."""
    patches = {}
    for encoder, deltas in file.deltas.items():
        factors = file.factors.get(encoder, {}) if isinstance(deltas, Expansions) else {}
        for name in deltas:
            key = f"{encoder}.transformer.{name}"
            patches[key] = lora_patch(*factors[name]) if name in factors else ("diff", (deltas[name],))
    return patches


def apply_file(clip: Any, file: SafeTextFile, strength: float = 1.0, mode: str = "embedding",
               override_fingerprint: bool = False, family: str | None = None, enforced: bool = False
               ) -> tuple[Any, list[str]]:
    """A clone of ``clip`` with ``file`` applied; returns ``(clip, warnings)``. ``clip`` itself is unchanged.
    ``enforced`` marks the embedding hooks as the server's enforced mode's."""
    strength = core_weights.check_strength(strength)
    mode = core_weights.check_mode(mode)
    family = family or family_of(clip)
    check_family(file, family)
    warnings = file.check_fingerprints(fingerprints(clip, family), override=override_fingerprint)
    out = clip.clone()
    label = f"{file.name} {strength:g} {mode}"
    if mode == "weight":
        patches = weight_patches(file)
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
        if not deltas:
            continue  # nothing changed in this encoder (e.g. only the other one of SDXL was trained)
        sub = getattr(model, encoder, None)
        if sub is None:
            raise SafeTextFileError(f"this CLIP has no {encoder} encoder, which SafeText file {file.name!r} changes")
        own = dict(sub.named_parameters())
        stray = [n for n in deltas if f"transformer.{n}" not in own]
        if stray:
            raise SafeTextFileError(f"SafeText file {file.name!r} changes {len(stray)} tensors the {encoder} encoder "
                                    f"does not have, e.g. {stray[:2]}")
        outside = [n for n in deltas if n.endswith(_OUTSIDE_WEIGHT_FUNCTIONS)]
        if outside:
            raise SafeTextFileError(f"SafeText file {file.name!r} changes {outside[0]}, which ComfyUI reads outside its "
                                    "weight wrappers: use blend mode 'weight' for this file")
        if not hasattr(out.patcher, "add_weight_wrapper"):
            raise UnsupportedClip("this ComfyUI has no weight wrappers (ModelPatcher.add_weight_wrapper), which the "
                                  "embedding blend needs: update ComfyUI, or use blend mode 'weight'")
        layer_norms = tuple(name for name, m in sub.transformer.named_modules() if is_norm(m))
        hook = EmbeddingBlendHook(encoder, deltas, strength, label, layer_norms, enforced)
        for key, wrapper in hook.wrappers.items():
            out.patcher.add_weight_wrapper(key, wrapper)
        for module, ln_hook in hook.layer_norm_hooks.items():
            _add_forward_hook(out, f"{encoder}.transformer.{module}", ln_hook)
        _add_forward_hook(out, encoder, hook)
    return out, warnings
