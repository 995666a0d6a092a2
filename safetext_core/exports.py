"""Exports of a SafeText file for places where SafeText itself is not installed.

* ``to_a1111``: AUTOMATIC1111's network key names (``lora_te_`` for SD 1.x/2.x, ``lora_te1_`` /
  ``lora_te2_`` for SDXL; the module names themselves for tensors outside the encoder layers, such as the
  final LayerNorm, which have no converted name) with ``.diff`` / ``.diff_b`` tensors, which the built-in
  Lora extension applies as a full-weight network (a weight blend, strength = the network multiplier). The
  webui cannot change an embedding table or a bare parameter: those tensors are left out, and the file's
  metadata says which and what share of the change they carry. A low-rank file's
  factors stay factors (under the same kohya names a low-rank SafeText file already uses).
* ``to_lowrank``: each 2-D difference compressed to rank r by SVD as LoRA ``lora_up`` / ``lora_down``
  pairs, under the keys a trained low-rank file uses (:func:`safetext_core.lowrank.factor_stem`: kohya names
  where the family and layer have one, else ComfyUI's ``text_encoders.*``); other differences are kept whole.
  The relative error of the compression is measured and returned, and stored in the file's metadata.
* ``export_transformers_folder``: the aligned encoder(s) as transformers folders, named like a diffusers
  pipeline's sub-folders.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from typing import Any, Callable, Mapping

import torch

from .encoding import EncoderSet
from .families import get_family
from .errors import ConfigError, UnsupportedModel
from .lowrank import KOHYA_SUFFIX, factor_stem, half_exact, in_half_precision, truncated_svd
from .models import hf_to_openclip_names
from .safetext_file import SafeTextFile, atomic_save, param_to_key
from .weights import apply_deltas



# AUTOMATIC1111's Lora extension (v1.10.1, extensions-builtin/Lora/networks.py) converts diffusers-style names
# only for the encoder layers (``lora_te_text_model_encoder_layers_*``); any other key is looked up as is among
# its ``network_layer_mapping``, the text encoder's module names with "_" for ".", prefixed per model:
COMPVIS_PREFIX = {("sd1", "clip_l"): "transformer_", ("sd2", "clip_h"): "model_",
                  ("sdxl", "clip_l"): "0_transformer_", ("sdxl", "clip_g"): "1_model_"}
# It applies networks only in the forward of Linear, Conv2d, GroupNorm, LayerNorm and MultiheadAttention: a
# change to an embedding table or a bare parameter cannot be expressed.
A1111_CANNOT = ("embeddings.token_embedding.", "embeddings.position_embedding.", "text_projection.")
# Forge's LoRA loader (dfdcbab, packages_3rdparty/comfyui_lora_collection/lora.py ``model_lora_keys_clip``) maps
# only the six projections of each encoder layer (weights, and their biases through ``diff_b``) for the text
# encoders: in Forge the same export also leaves out the LayerNorms (the final one included).
# The projections are the kohya table's (the same six every host's text-encoder LoRA names).
_FORGE_CAN = re.compile(r"^text_model\.encoder\.layers\.\d+\.(" + "|".join(map(re.escape, KOHYA_SUFFIX)) +
                        r")\.(weight|bias)$")


def a1111_key(family: str, encoder: str, param: str) -> str:
    prefix = get_family(family).encoder(encoder).a1111_prefix
    if not param.startswith("text_model.encoder.layers.") and (family, encoder) in COMPVIS_PREFIX:
        native = param if encoder == "clip_l" else next(iter(hf_to_openclip_names({param: torch.zeros(1)})))
        prefix, param = COMPVIS_PREFIX[(family, encoder)], native  # e.g. transformer_text_model_final_layer_norm
    stem, kind = (param[:-len(".bias")], "diff_b") if param.endswith(".bias") else (param.rsplit(".", 1)[0], "diff")
    return f"{prefix}{stem.replace('.', '_')}.{kind}"


def _left_out(file: SafeTextFile, cannot: Callable[[str], bool]) -> dict[str, Any]:
    """The tensors ``cannot`` rules out, and their share of the file's change (squared Frobenius norm, all
    encoders together)."""
    names, left, total = [], 0.0, 0.0
    for encoder, params in file.deltas.items():
        for param, delta in params.items():
            size = float(delta.float().pow(2).sum())
            total += size
            if cannot(param):
                names.append(f"{encoder}.{param}")
                left += size
    return {"tensors": names, "share": left / total if total else 0.0}


def a1111_left_out(file: SafeTextFile) -> dict[str, Any]:
    """What AUTOMATIC1111's Lora extension cannot express: the tensors, and their share of the file's change."""
    return _left_out(file, lambda param: any(part in param for part in A1111_CANNOT))


def forge_left_out(file: SafeTextFile) -> dict[str, Any]:
    """What Forge's LoRA loader cannot express (everything but the layers' projections), and its share."""
    return _left_out(file, lambda param: not _FORGE_CAN.match(param))


def to_a1111(file: SafeTextFile, path: str | os.PathLike) -> Path:
    """The file as an AUTOMATIC1111 network (``<lora:NAME:1>`` = SafeText's weight blend at strength 1), less
    what the webui cannot express (:func:`a1111_left_out`, recorded in the metadata)."""
    if not all(spec.a1111_prefix for spec in get_family(file.family).encoders):
        raise UnsupportedModel(f"a {file.family} SafeText file has no AUTOMATIC1111 equivalent")
    left_out = a1111_left_out(file)
    tensors = {}
    for encoder, params in file.deltas.items():
        for param, delta in params.items():
            if param in file.factors.get(encoder, {}) or f"{encoder}.{param}" in left_out["tensors"]:
                continue
            tensors[a1111_key(file.family, encoder, param)] = delta.contiguous()
    for key in [k for k in tensors if k.endswith(".diff_b")]:  # the webui reads a module's diff_b only beside a diff
        weight = key[:-len("_b")]
        if weight not in tensors:
            shape = _module_weight_shape(file, key, tensors[key])
            if shape is not None:
                tensors[weight] = torch.zeros(shape, dtype=tensors[key].dtype)
    tensors.update(file.factor_tensors())
    meta = {k: v for k, v in file.metadata().items()}
    meta["safetext.export"] = "a1111"
    meta["safetext.a1111_left_out"] = json.dumps(left_out)
    meta["safetext.forge_left_out"] = json.dumps(forge_left_out(file))
    return atomic_save(tensors, Path(path), meta)


def _module_weight_shape(file: SafeTextFile, bias_key: str, bias: torch.Tensor) -> tuple[int, ...] | None:
    """The shape of the weight beside a bias whose weight the file does not change: 1-D for a LayerNorm, else
    unknown (None: then the webui skips the bias, as it would have)."""
    return tuple(bias.shape) if ("layer_norm" in bias_key or "ln_" in bias_key) else None


def to_lowrank(file: SafeTextFile, path: str | os.PathLike, rank: int = 64) -> tuple[Path, dict[str, float]]:
    """Write a LoRA approximation; return ``(path, {"relative_error": ..., "max_tensor_error": ..., ...})``."""
    if rank < 1:
        raise ConfigError("rank must be at least 1")
    tensors: dict[str, torch.Tensor] = {}
    err2 = total2 = 0.0
    worst = 0.0
    family = get_family(file.family)
    for encoder, params in file.deltas.items():
        prefix = family.encoder(encoder).a1111_prefix if encoder in family.encoder_names else ""
        for param, delta in params.items():
            if delta.dim() == 2 and min(delta.shape) > rank:
                up, down = in_half_precision(*truncated_svd(delta, rank))  # the error below includes the rounding
                base = factor_stem(encoder, param, prefix)
                tensors[base + ".lora_up.weight"] = up.half() if half_exact(up) else up
                tensors[base + ".lora_down.weight"] = down.half() if half_exact(down) else down
                tensors[base + ".alpha"] = torch.tensor(float(up.shape[1]))
                error = float((delta - up @ down).norm())
            else:
                tensors[param_to_key(encoder, param)] = delta.contiguous()
                error = 0.0
            norm = float(delta.norm())
            err2 += error ** 2
            total2 += norm ** 2
            worst = max(worst, error / norm if norm else 0.0)
    figures = {"rank": float(rank), "relative_error": (err2 / total2) ** 0.5 if total2 else 0.0,
               "max_tensor_error": worst,
               "parameters": float(sum(t.numel() for t in tensors.values())),
               "full_parameters": float(file.parameter_count())}
    meta = file.metadata()
    meta["safetext.export"] = "lowrank"
    meta["safetext.lowrank"] = json.dumps(figures)
    return atomic_save(tensors, Path(path), meta), figures


def export_transformers_folder(encoders: EncoderSet, deltas: Mapping[str, Mapping[str, torch.Tensor]],
                               folder: str | os.PathLike, strength: float = 1.0) -> Path:
    """Write the aligned encoder(s) as transformers folders (``<folder>/<encoder>/``) with tokenizers.

    For SD families the sub-folders are named like a diffusers pipeline's (``text_encoder``,
    ``text_encoder_2``), so they can replace a pipeline's encoders directly.
    """
    folder = Path(folder)
    for spec in encoders.profile.encoders:
        aligned = apply_deltas(encoders.models[spec.name], dict(deltas.get(spec.name, {})), strength)
        if hasattr(aligned, "to_transformers"):
            aligned = aligned.to_transformers()
        model_folder, tokenizer_folder = spec.diffusers
        aligned.save_pretrained(str(folder / model_folder), safe_serialization=True)
        tokenizer = encoders.tokenizers.get(spec.name)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder / tokenizer_folder))
    return folder
