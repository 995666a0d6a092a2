"""Applying a SafeText file: the two blend modes of DESIGN section 5, host-agnostic.

* **embedding blend** (default): ``cond = lerp(E(x), E'(x), s)``, pooled likewise; exact at every
  strength; one more encoder pass per prompt. ``torch.lerp`` returns each end point exactly, so
  strength 0 is the original and strength 1 the aligned encoder, bit for bit.
* **weight blend**: ``W + s * delta``; no extra pass; equal to the embedding blend at s = 0 and s = 1.

Nothing here edits a module's weights in place: the aligned pass runs through
``torch.func.functional_call`` with substituted parameters, so an error or a concurrent LoRA can
never leave the host's model modified.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any, Mapping

import torch
from torch import nn

BLEND_MODES = ("embedding", "weight")


def check_strength(strength: float) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number between 0 and 1, not {strength!r}") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise ValueError(f"strength must be between 0 and 1, not {value}")
    return value


def check_mode(mode: str) -> str:
    if mode not in BLEND_MODES:
        raise ValueError(f"blend mode must be one of {BLEND_MODES}, not {mode!r}")
    return mode


def shifted_parameters(module: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float,
                       cache: dict | None = None) -> dict[str, torch.Tensor]:
    """``{name: W + strength * delta}`` in each parameter's own dtype and device, for functional_call."""
    params = dict(module.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, delta in deltas.items():
        if name not in params:
            raise KeyError(f"this encoder has no parameter {name}; the SafeText file does not fit it")
        weight = params[name]
        key = None
        if cache is not None:
            try:
                version = weight._version
            except RuntimeError:  # inference tensors (ComfyUI) keep no version counter; they are never edited in place
                version = -1
            key = (name, weight.data_ptr(), weight.dtype, weight.device, strength, version)
        if key is not None and key in cache:
            out[name] = cache[key]
            continue
        shifted = (weight.detach().float() + strength * delta.to(weight.device, torch.float32)).to(weight.dtype)
        if key is not None:
            cache[key] = shifted
        out[name] = shifted
    return out


def run_shifted(module: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float, *args: Any,
                cache: dict | None = None, **kwargs: Any) -> Any:
    """Call ``module(*args, **kwargs)`` as if its weights were ``W + strength * delta``."""
    return torch.func.functional_call(module, shifted_parameters(module, deltas, strength, cache), args, kwargs,
                                      strict=False)


def blend_outputs(original: Any, aligned: Any, strength: float) -> Any:
    """``lerp(original, aligned, strength)`` through tensors, tuples, lists, dicts and ModelOutputs."""
    if isinstance(original, torch.Tensor):
        if not original.is_floating_point():
            return original
        return torch.lerp(original, aligned.to(original.dtype), strength)
    if isinstance(original, dict):  # plain dicts and transformers ModelOutputs (OrderedDict subclasses)
        values = {k: blend_outputs(v, aligned[k], strength) for k, v in original.items()}
        try:
            return type(original)(**values)
        except TypeError:
            return values
    if isinstance(original, tuple):
        values = [blend_outputs(a, b, strength) for a, b in zip(original, aligned)]
        return type(original)(*values) if hasattr(original, "_fields") else tuple(values)
    if isinstance(original, list):
        return [blend_outputs(a, b, strength) for a, b in zip(original, aligned)]
    if is_dataclass(original):
        return type(original)(**{f.name: blend_outputs(getattr(original, f.name), getattr(aligned, f.name), strength)
                                 for f in fields(original)})
    return original
