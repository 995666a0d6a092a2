"""``W + s * delta`` and ``lerp(E(x), E'(x), s)``: the two blend modes of a SafeText file, in one place.

* **embedding blend** (default): ``cond = lerp(E(x), E'(x), s)``, pooled likewise; exact at every strength;
  one more encoder pass per prompt. ``torch.lerp`` returns each end point exactly, so strength 0 is the
  original and strength 1 the aligned encoder, bit for bit.
* **weight blend**: ``W + s * delta``; no extra pass; equal to the embedding blend at s = 0 and s = 1.

Every host computes shifted weights with :func:`shifted`: swapped into a module's parameter slots for one
pass by :class:`ShiftPlan` (the diffusers handle, the A1111/Forge aligned pass), returned by ComfyUI's
weight wrappers, or copied into an evaluation model by :func:`apply_deltas`; outputs are blended with
:func:`blend_outputs`, which walks nested outputs with :func:`map_tensors`. Nothing here edits a module's
weights in place.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .errors import ConfigError, SafeTextFileError

BLEND_MODES = ("embedding", "weight")


def check_strength(strength: Any) -> float:
    """A strength in [0, 1] as a float, or a :class:`ConfigError` that says what was wrong."""
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ConfigError(f"strength must be a number between 0 and 1, not {strength!r}") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise ConfigError(f"strength must be between 0 and 1, not {value}")
    return value


def check_mode(mode: Any) -> str:
    if mode not in BLEND_MODES:
        raise ConfigError(f"blend mode must be one of {BLEND_MODES}, not {mode!r}")
    return mode


def shifted(weight: torch.Tensor, delta: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """``weight + strength * delta``, summed in float32, in ``weight``'s dtype and device (a new tensor)."""
    return (weight.detach().float() + strength * delta.to(weight.device, torch.float32)).to(weight.dtype)


def shifted_parameters(module: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float
                       ) -> dict[str, torch.Tensor]:
    """``{name: W + strength * delta}`` for the named parameters of ``module`` (for a parameter swap)."""
    params = dict(module.named_parameters())
    missing = [name for name in deltas if name not in params]
    if missing:
        raise SafeTextFileError(f"this encoder has no parameter {missing[0]}; the SafeText file does not fit it")
    return {name: shifted(params[name], delta, strength) for name, delta in deltas.items()}


def apply_deltas(model: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float = 1.0) -> nn.Module:
    """A copy of ``model`` with ``W + strength * delta`` (the original is never touched)."""
    aligned = copy.deepcopy(model)
    new = shifted_parameters(aligned, deltas, strength)
    params = dict(aligned.named_parameters())
    with torch.no_grad():
        for name, value in new.items():
            params[name].copy_(value)
    return aligned


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # inference tensors keep no version counter
        return -1


class ShiftPlan:
    """``W + shift * delta`` for one module, as parameter slots to swap: built once, checked per call.

    Building resolves names, owners and the shifted tensors (about a millisecond for CLIP-L); every
    later call only checks that each slot still holds the same parameter at the same address and
    version (a LoRA fused in place, a replaced or moved parameter make the plan stale, and the handle
    builds a new one) and then swaps. No weight is ever edited; the slots are restored even on error.
    """

    def __init__(self, module: nn.Module, deltas: dict[str, torch.Tensor], shift: float):
        params = dict(module.named_parameters())
        owners = dict(module.named_modules())
        self.slots: list[tuple[dict, str, torch.Tensor, torch.Tensor]] = []
        for name, delta in deltas.items():
            owner_name, _, attribute = name.rpartition(".")
            owner = owners.get(owner_name)
            if name not in params or owner is None or owner._parameters.get(attribute) is not params[name]:
                raise SafeTextFileError(f"this encoder has no parameter {name}; the SafeText file does not fit it")
            weight = params[name]
            self.slots.append((owner._parameters, attribute, weight, shifted(weight, delta, shift)))
        # Everything else the pass reads (a CUDA graph reads it by address): watched, never swapped.
        swapped = {id(weight) for _, _, weight, _ in self.slots}
        watched = [(owner._parameters, attribute, tensor) for owner in owners.values()
                   for attribute, tensor in owner._parameters.items() if tensor is not None and id(tensor) not in swapped]
        watched += [(owner._buffers, attribute, tensor) for owner in owners.values()
                    for attribute, tensor in owner._buffers.items() if tensor is not None]
        self.watched = [(registry, attribute, weight) for registry, attribute, weight, _ in self.slots] + watched
        self.stamp = [(tensor.data_ptr(), _version(tensor)) for _, _, tensor in self.watched]

    def current(self) -> bool:
        for (registry, attribute, tensor), (address, version) in zip(self.watched, self.stamp):
            if registry.get(attribute) is not tensor or tensor.data_ptr() != address or _version(tensor) != version:
                return False
        return True

    @contextmanager
    def swapped(self) -> Iterator[None]:
        try:
            for registry, attribute, _, shifted in self.slots:
                registry[attribute] = shifted
            yield
        finally:
            for registry, attribute, weight, _ in self.slots:
                registry[attribute] = weight


def map_tensors(fn: Callable[..., torch.Tensor], value: Any, *others: Any) -> Any:
    """``fn`` applied to every tensor of a nested output (tensors, tuples, named tuples, lists, dicts,
    transformers ModelOutputs, dataclasses), zipped with the same positions of ``others``."""
    if isinstance(value, torch.Tensor):
        return fn(value, *others)
    if isinstance(value, dict):  # plain dicts and transformers ModelOutputs (OrderedDict subclasses)
        items = {k: map_tensors(fn, v, *(o[k] for o in others)) for k, v in value.items()}
        try:
            return type(value)(**items)
        except TypeError:
            return items
    if isinstance(value, tuple):
        items = [map_tensors(fn, v, *parts) for v, *parts in zip(value, *others)]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, list):
        return [map_tensors(fn, v, *parts) for v, *parts in zip(value, *others)]
    if is_dataclass(value) and not isinstance(value, type):
        return type(value)(**{f.name: map_tensors(fn, getattr(value, f.name), *(getattr(o, f.name) for o in others))
                              for f in fields(value)})
    return value


def _lerp(strength: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def blend(original: torch.Tensor, aligned: torch.Tensor) -> torch.Tensor:
        if not original.is_floating_point():
            return original
        return torch.lerp(original, aligned.to(original.dtype), strength)

    return blend


def blend_outputs(original: Any, aligned: Any, strength: float) -> Any:
    """``lerp(original, aligned, strength)`` through every floating-point tensor of two nested outputs."""
    return map_tensors(_lerp(strength), original, aligned)
