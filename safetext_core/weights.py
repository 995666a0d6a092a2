"""``W + s * delta`` and ``lerp(E(x), E'(x), s)``: the two blend modes of a SafeText file, in one place.

* **embedding blend** (default): ``cond = lerp(E(x), E'(x), s)``, pooled likewise; exact at every strength;
  one more encoder pass per prompt. ``torch.lerp`` returns each end point exactly, so strength 0 is the
  original and strength 1 the aligned encoder, bit for bit.
* **weight blend**: ``W + s * delta``; no extra pass; equal to the embedding blend at s = 0 and s = 1.

Every host computes shifted weights with :func:`shifted`: run by :class:`ShiftPlan` either on a *shadow* of
the module (the diffusers handle: a copy of the module tree that shares every tensor except the shifted
ones, so nothing shared is ever written and any number of threads can run it at once) or swapped into the
module's parameter slots for one pass (the A1111/Forge aligned pass, which runs one job at a time),
returned by ComfyUI's weight wrappers, or copied into an evaluation model by :func:`apply_deltas`; outputs
are blended with :func:`blend_outputs`, which walks nested outputs with :func:`map_tensors`. Nothing here
edits a module's weights in place, and a difference whose shape is not exactly its weight's is refused
(never broadcast).
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .errors import ConfigError, SafeTextError, SafeTextFileError
from .memory import share_weights

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


# A difference read from a file may change a weight by at most DELTA_RATIO x max(max |w|, DELTA_FLOOR).
# Real files stay far below: the default MiniLM run's largest is 0.07 x its weight's max |w| (0.019 in all);
# the tests' deliberately fast training about 1 x. A file above it is hostile or broken, not aggressive.
DELTA_RATIO = 100.0
DELTA_FLOOR = 0.1


def _source(deltas: Any) -> str:
    """The file a set of differences came from (``SafeTextFile.load`` tags them), for error messages."""
    source = getattr(deltas, "source", None)
    return f"SafeText file {source}" if source else "the SafeText file"


def _abs_max(tensor: torch.Tensor) -> float:
    low, high = torch.aminmax(tensor.detach())
    return max(abs(float(low)), abs(float(high)))


def check_difference(weight: torch.Tensor, delta: torch.Tensor, name: str, source: str = "the SafeText file",
                     magnitude: bool = True) -> None:
    """Refuse (:class:`SafeTextFileError` naming ``source`` and ``name``) a difference that does not fit
    ``weight``: another shape (never transposed, never broadcast), not floating point, or, with
    ``magnitude``, larger than :data:`DELTA_RATIO` x max(max |w|, :data:`DELTA_FLOOR`) or overflowing the
    weight's dtype. The magnitude check reads both tensors once (about 0.1 s for all of CLIP-L on a CPU)."""
    if tuple(delta.shape) != tuple(weight.shape):
        raise SafeTextFileError(f"{source}: the difference for {name} has shape {tuple(delta.shape)}, the encoder's "
                                f"weight {tuple(weight.shape)}; a difference of another shape is never applied "
                                "(not transposed, not broadcast)")
    if not weight.is_floating_point() or not delta.is_floating_point():
        raise SafeTextFileError(f"{source}: {name} is {weight.dtype} and its difference {delta.dtype}; SafeText "
                                "shifts floating-point weights only")
    if not magnitude or weight.is_meta or delta.is_meta:
        return
    scale, biggest = _abs_max(weight), _abs_max(delta)
    limit = DELTA_RATIO * max(scale, DELTA_FLOOR)
    if not biggest <= limit:
        raise SafeTextFileError(
            f"{source}: the difference for {name} reaches {biggest:.3g}, its weight's largest value is {scale:.3g}; "
            f"a difference above {DELTA_RATIO:g} x max(max |w|, {DELTA_FLOOR:g}) = {limit:.3g} is implausible and "
            "refused")
    if scale + biggest > torch.finfo(weight.dtype).max:
        raise SafeTextFileError(f"{source}: the difference for {name} would overflow its {weight.dtype} weight")


def shifted(weight: torch.Tensor, delta: torch.Tensor, strength: float = 1.0, name: str | None = None,
            source: str = "the SafeText file") -> torch.Tensor:
    """``weight + strength * delta``, summed in float32, in ``weight``'s dtype and device (a new tensor).

    ``delta`` must have exactly ``weight``'s shape: a difference of another shape is refused with a
    :class:`SafeTextFileError`, never broadcast over the weight.
    """
    check_difference(weight, delta, name or "a weight", source, magnitude=False)
    return (weight.detach().float() + strength * delta.to(weight.device, torch.float32)).to(weight.dtype)


def _checked(module: nn.Module, deltas: Mapping[str, torch.Tensor]) -> tuple[dict[str, nn.Parameter], str]:
    """``module``'s parameters by name and the differences' source, once every difference fits one of them.

    Differences read from a file (``SafeTextFile.load`` tags them with their ``source``) are checked in
    full by :func:`check_difference`; others (training's own) for name, shape and dtype."""
    params = dict(module.named_parameters())
    source = _source(deltas)
    missing = [name for name in deltas if name not in params]
    if missing:
        raise SafeTextFileError(f"this encoder has no parameter {missing[0]}: {source} does not fit it")
    if getattr(deltas, "source", None):
        for name, delta in deltas.items():
            check_difference(params[name], delta, name, source)
    return params, source


def shifted_parameters(module: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float
                       ) -> dict[str, torch.Tensor]:
    """``{name: W + strength * delta}`` for the named parameters of ``module`` (for a parameter swap)."""
    params, source = _checked(module, deltas)
    return {name: shifted(params[name], delta, strength, name, source) for name, delta in deltas.items()}


def shift_in_place(module: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float = 1.0) -> nn.Module:
    """``W + strength * delta`` written into ``module``'s own parameters (a copy the caller owns), one weight at a
    time: no second set of weights is ever alive (a 4B encoder's differences are read lazily, one by one)."""
    params, source = _checked(module, deltas)
    with torch.no_grad():
        for name, delta in deltas.items():
            params[name].copy_(shifted(params[name], delta, strength, name, source))
    return module


def apply_deltas(model: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float = 1.0) -> nn.Module:
    """A copy of ``model`` with ``W + strength * delta`` (the original is never touched)."""
    return shift_in_place(copy.deepcopy(model), deltas, strength)


def shifted_view(model: nn.Module, deltas: Mapping[str, torch.Tensor], strength: float = 1.0) -> nn.Module:
    """A copy of ``model`` that computes what ``apply_deltas(model, deltas, strength)`` computes, bit for bit,
    without a second set of weights: it shares every tensor with ``model``, and a module holding a parameter with
    a difference gets ``W + strength * delta`` (:func:`shifted`) in its own slot for its own forward pass only.

    One shifted weight is alive at a time: an aligned float32 copy of a 2.6B encoder is 10 GB, and an evaluation
    after training held it beside the original and the host's own copy. Lazy differences (a low-rank file's
    expansions) are expanded per pass. For measuring; ``model`` is never written, and the view is not for training.
    """
    params, source = _checked(model, deltas)
    view = share_weights(model)
    # Every slot that holds a shifted parameter (a tied table sits in two modules), by the module that reads it
    slots: dict[nn.Module, list[tuple[str, str]]] = {}
    wanted = {id(params[name]): name for name in deltas}
    for module in view.modules():
        for attribute, tensor in module._parameters.items():
            if tensor is not None and id(tensor) in wanted:
                slots.setdefault(module, []).append((attribute, wanted[id(tensor)]))

    def swap_in(module: nn.Module, args: Any) -> None:
        for attribute, name in slots[module]:
            module._parameters[attribute] = shifted(params[name], deltas[name], strength, name, source)

    def swap_out(module: nn.Module, args: Any, output: Any) -> None:
        for attribute, name in slots[module]:
            module._parameters[attribute] = params[name]

    for module in slots:
        module.register_forward_pre_hook(swap_in)
        module.register_forward_hook(swap_out, always_call=True)
    return view


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # inference tensors keep no version counter
        return -1


class ShiftPlan:
    """``W + shift * delta`` for one module: built once, checked per call, run two ways.

    Building resolves names, owners and the shifted tensors (about a millisecond for CLIP-L); every later
    call only checks (:meth:`current`) that each slot still holds the same parameter at the same address and
    version, and that the module tree has the same sub-modules, forward hooks and train/eval flags (a LoRA
    fused in place, a replaced or moved parameter, an injected adapter layer, a hook added make the plan
    stale: the caller builds a new one).

    * :meth:`run` / :attr:`module`: the pass runs on a *shadow* of the module, a copy of the module tree
      (made once, on first use) whose parameter slots hold the shifted tensors, which shares every other
      tensor and buffer with the module and has its own copies of the registries (parameters, buffers,
      sub-modules, hooks). Nothing shared is written, so it is safe from any number of threads at once, and
      a thread running the module itself meanwhile sees its own weights.
    * :meth:`swapped`: the shifted tensors are swapped into the module's own slots for one pass and
      restored even on error. Any other caller of the module sees the shifted weights meanwhile: only for
      hosts that run one job at a time.

    No weight is ever edited in place.
    """

    def __init__(self, module: nn.Module, deltas: Mapping[str, torch.Tensor], shift: float):
        # Every name of a shared parameter: a wrapper that re-exposes its inner module's weight (Forge's
        # textual-inversion embedding) is reached only by the inner name its forward reads.
        params = dict(module.named_parameters(remove_duplicate=False))
        owners = dict(module.named_modules())
        source = _source(deltas)
        self.root = module
        self.shift = shift
        self.slots: list[tuple[dict, str, torch.Tensor, torch.Tensor]] = []
        # Every slot that holds each parameter: a tied weight (transformers 5's T5 keeps ``shared`` and
        # ``encoder.embed_tokens`` as two modules holding one Parameter) is shifted wherever a forward reads it.
        aliases: dict[int, list[tuple[dict, str]]] = {}
        for owner in owners.values():
            for attribute, tensor in owner._parameters.items():
                if tensor is not None:
                    aliases.setdefault(id(tensor), []).append((owner._parameters, attribute))
        shifted_ids: set[int] = set()
        for name, delta in deltas.items():
            owner_name, _, attribute = name.rpartition(".")
            owner = owners.get(owner_name)
            if name not in params or owner is None or owner._parameters.get(attribute) is not params[name]:
                raise SafeTextFileError(f"this encoder has no parameter {name}: {source} does not fit it")
            weight = params[name]
            if getattr(deltas, "source", None):  # straight from a file: checked in full
                check_difference(weight, delta, name, source)
            value = shifted(weight, delta, shift, name, source)
            if not value.is_meta and not bool(torch.isfinite(value).all()):
                raise SafeTextFileError(f"{source}: {name} shifted by its difference is not finite in "
                                        f"{weight.dtype}; the file does not fit this encoder")
            if id(weight) in shifted_ids:
                raise SafeTextFileError(f"{source}: {name} is a weight tied to another the file also changes; one "
                                        "difference per weight")
            shifted_ids.add(id(weight))
            self.slots.extend((registry, slot, weight, value) for registry, slot in aliases[id(weight)])
        # Everything else the pass reads (a CUDA graph reads it by address): watched, never swapped.
        swapped = {id(weight) for _, _, weight, _ in self.slots}
        watched = [(owner._parameters, attribute, tensor) for owner in owners.values()
                   for attribute, tensor in owner._parameters.items() if tensor is not None and id(tensor) not in swapped]
        watched += [(owner._buffers, attribute, tensor) for owner in owners.values()
                    for attribute, tensor in owner._buffers.items() if tensor is not None]
        self.watched = [(registry, attribute, weight) for registry, attribute, weight, _ in self.slots] + watched
        self.stamp = [(tensor.data_ptr(), _version(tensor)) for _, _, tensor in self.watched]
        self._tree = [(m, m.training, dict(m._modules), dict(m._forward_hooks), dict(m._forward_pre_hooks))
                      for m in owners.values()]
        self._shadow: nn.Module | None = None
        self._lock = threading.Lock()

    def current(self) -> bool:
        for (registry, attribute, tensor), (address, version) in zip(self.watched, self.stamp):
            if registry.get(attribute) is not tensor or tensor.data_ptr() != address or _version(tensor) != version:
                return False
        for module, training, children, hooks, pre_hooks in self._tree:  # what a shadow copies besides tensors
            if (module.training is not training or module._modules != children or module._forward_hooks != hooks
                    or module._forward_pre_hooks != pre_hooks):
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

    @property
    def module(self) -> nn.Module:
        """The shadow of the module with the shifted tensors in its slots (built once, thread-safe)."""
        shadow = self._shadow
        if shadow is None:
            with self._lock:
                if self._shadow is None:
                    self._shadow = _shadow_tree(self.root, self.slots)
                shadow = self._shadow
        return shadow

    def run(self, args: tuple, kwargs: dict) -> Any:
        """The module's own ``forward`` (its class's, under any instance-level wrapper) on the shadow."""
        return type(self.root).forward(self.module, *args, **kwargs)


def _shadow_tree(root: nn.Module, slots: list[tuple[dict, str, torch.Tensor, torch.Tensor]]) -> nn.Module:
    """A copy of ``root``'s module tree: every tensor and buffer shared, ``slots``' shifted tensors in their
    parameter slots, registries (parameters, buffers, sub-modules, hooks) copied."""
    replacements: dict[int, dict[str, torch.Tensor]] = {}
    for registry, attribute, _, value in slots:
        replacements.setdefault(id(registry), {})[attribute] = value
    copies: dict[int, nn.Module] = {}

    def copy_module(module: nn.Module, path: str) -> nn.Module:
        if id(module) in copies:  # a module reachable twice stays one module
            return copies[id(module)]
        if path and ("forward" in module.__dict__ or "_hf_hook" in module.__dict__):
            raise SafeTextError(
                f"the encoder's sub-module {path} ({type(module).__name__}) has a patched forward (e.g. "
                "enable_sequential_cpu_offload's hooks); SafeText's aligned pass cannot run under it. Use "
                "enable_model_cpu_offload, or no offload")
        clone = object.__new__(type(module))
        clone.__dict__.update(module.__dict__)
        # Its own registries (parameters, buffers, hooks...): whatever runs on the shadow, e.g. transformers
        # installing its output-capturing hooks on first use, never reaches the module's.
        for name, value in module.__dict__.items():
            if name.startswith("_") and type(value) in (dict, OrderedDict, set):
                clone.__dict__[name] = type(value)(value)
        for name in ("_parameters", "_buffers", "_modules"):  # whatever their type
            if clone.__dict__[name] is module.__dict__[name]:
                clone.__dict__[name] = dict(module.__dict__[name])
        clone.__dict__["_parameters"].update(replacements.get(id(module._parameters), {}))
        copies[id(module)] = clone
        clone.__dict__["_modules"] = type(module._modules)(
            (name, None if child is None else copy_module(child, f"{path}.{name}" if path else name))
            for name, child in module._modules.items())
        return clone

    shadow = copy_module(root, "")
    for attribute in ("forward", "_old_forward", "_hf_hook"):  # the root's wrappers stay with the root
        shadow.__dict__.pop(attribute, None)
    return shadow


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
