"""Apply a SafeText file to a diffusers ``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``.

``apply_safetext(pipe, "file.safetensors", strength=1.0, mode="embedding")`` returns a handle whose
``enabled``, ``strength`` and ``mode`` can be changed between generations and whose ``remove()``
restores the pipeline. The encoders' weights are never modified: the handle overrides each encoder's
``forward`` on the instance, computing the aligned pass with substituted parameters. Disabled (or
strength 0 in embedding mode) calls the original forward directly: bit-for-bit the original output.

Cost per encoder call (see benchmarks/): the weight blend is one pass, like the original, with the
shifted tensors swapped into the module's parameter slots for its duration (no weight is edited, and
the slots are restored even when the pass raises). The embedding blend at a strength strictly
between 0 and 1 needs the original and the aligned pass; on CUDA the aligned one is replayed from a
CUDA graph captured on first use for each input shape, so it costs the GPU's few hundred
microseconds rather than a second round of kernel launches. Anything the capture cannot handle
falls back to the plain pass.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .errors import SafeTextError, SafeTextFileError
from .weights import ShiftPlan, blend_outputs, check_mode, check_strength, map_tensors
from .families import get_family
from .fingerprint import fingerprint_state_dict
from .models import to_model_names
from .safetext_file import SafeTextFile

MAX_GRAPHS = 16  # captured graphs kept per handle (each holds its static inputs, outputs and memory pool)



class SafeTextHandle:
    """Live control over a SafeText file applied to a pipeline."""

    def __init__(self, pipe: Any, file: SafeTextFile, strength: float, mode: str, enabled: bool,
                 override_fingerprint: bool, use_cuda_graphs: bool = True):
        family = get_family(file.family)
        if not family.diffusion:
            raise SafeTextFileError(f"a {file.family} SafeText file cannot be applied to a diffusion pipeline")
        self.file = file
        self._strength = check_strength(strength)
        self._mode = check_mode(mode)
        self.enabled = bool(enabled)
        self._modules: dict[str, nn.Module] = {}
        for encoder, (attribute, _) in ((spec.name, spec.diffusers) for spec in family.encoders):
            module = getattr(pipe, attribute, None)
            if module is None:
                raise SafeTextFileError(f"this pipeline has no {attribute} for the file's {encoder} encoder")
            self._modules[encoder] = module
        fingerprints = {e: fingerprint_state_dict(m.state_dict()) for e, m in self._modules.items()}
        self.warnings = file.check_fingerprints(fingerprints, override=override_fingerprint)
        self._deltas = {e: to_model_names(m, file.deltas.get(e, {})) for e, m in self._modules.items()}
        self._plans: dict[tuple[str, float], ShiftPlan] = {}
        self.use_cuda_graphs = bool(use_cuda_graphs)
        self._graphs: dict[tuple, _GraphedPass | None] = {}  # None: this call shape runs eagerly
        for encoder, module in self._modules.items():
            if "forward" in module.__dict__:
                raise SafeTextError(f"{type(module).__name__} already has a patched forward (another SafeText handle?)")
            module.forward = self._make_forward(encoder, module)

    # ------------------------------------------------------------------ controls
    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = check_strength(value)
        if value != self._strength:
            self._strength = value
            # The embedding blend runs at shift 1 (and its graphs read those tensors): keep that plan.
            self._plans = {k: v for k, v in self._plans.items() if k[1] == 1.0}

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = check_mode(value)

    def remove(self) -> None:
        for module in self._modules.values():
            module.__dict__.pop("forward", None)
        self._modules.clear()
        self._plans.clear()
        self._graphs.clear()

    def __enter__(self) -> "SafeTextHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ the patched forward
    def _make_forward(self, encoder: str, module: nn.Module):
        original_forward = type(module).forward.__get__(module)
        handle = self

        def aligned_pass(plan: ShiftPlan, args: tuple, kwargs: dict) -> Any:
            with plan.swapped():
                return original_forward(*args, **kwargs)

        def forward(*args: Any, **kwargs: Any) -> Any:
            strength = handle._strength
            if not handle.enabled or strength == 0.0:
                return original_forward(*args, **kwargs)
            # Weight blend: one pass with W + s * delta. Embedding blend: the fully aligned encoder
            # (alone at s = 1, where the blend equals it), lerped with the original pass.
            plan = handle._plan(encoder, module, strength if handle._mode == "weight" else 1.0)
            if handle._mode == "weight" or strength == 1.0:
                return aligned_pass(plan, args, kwargs)
            original = original_forward(*args, **kwargs)
            graphed = handle._graphed(encoder, plan, aligned_pass, args, kwargs)
            aligned = graphed(args, kwargs) if graphed is not None else aligned_pass(plan, args, kwargs)
            return blend_outputs(original, aligned, strength)

        return forward

    def _plan(self, encoder: str, module: nn.Module, shift: float) -> "ShiftPlan":
        plan = self._plans.get((encoder, shift))
        if plan is None or not plan.current():
            plan = self._plans[(encoder, shift)] = ShiftPlan(module, self._deltas[encoder], shift)
        return plan

    def _graphed(self, encoder: str, plan: "ShiftPlan", aligned_pass: Callable[["ShiftPlan", tuple, dict], Any],
                 args: tuple, kwargs: dict) -> "_GraphedPass | None":
        """The CUDA graph of the fully aligned pass for this call's shapes, captured on first use."""
        if not self.use_cuda_graphs or torch.is_grad_enabled() or torch.is_autocast_enabled("cuda"):
            return None  # graphs are captured for plain inference only
        signature = _call_signature(args, kwargs)
        if signature is None:
            return None
        # ``plan`` is current (just checked) and watches every tensor the graph reads by address; a
        # rebuilt plan means a new graph.
        key = (encoder, signature, plan)
        if key not in self._graphs:
            # Drop this encoder's stale graphs (and the memory they hold) before capturing a new one.
            self._graphs = {k: g for k, g in self._graphs.items() if k[:2] != (encoder, signature)}
            while len(self._graphs) >= MAX_GRAPHS:  # many prompt shapes: forget the oldest graph
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = _GraphedPass.capture(lambda a, k: aligned_pass(plan, a, k), args, kwargs, plan)
        return self._graphs[key]


# ---------------------------------------------------------------------------------- CUDA graphs

def _call_signature(args: tuple, kwargs: dict) -> tuple | None:
    """Hashable shapes/dtypes of a call's tensors and values of the rest; None if it cannot be graphed."""
    parts: list[Any] = []
    tensors = 0
    for key, value in list(enumerate(args)) + sorted(kwargs.items()):
        if isinstance(value, torch.Tensor):
            if value.device.type != "cuda":
                return None
            tensors += 1
            parts.append((key, tuple(value.shape), value.dtype, value.device.index))
        elif value is None or isinstance(value, (bool, int, float, str)):
            parts.append((key, value))
        else:
            return None
    # Static inputs made in inference mode cannot be refilled outside it (and vice versa).
    return (torch.is_inference_mode_enabled(), *parts) if tensors else None


class _GraphedPass:
    """One captured CUDA graph of a pass: static inputs are refilled, the graph replayed, outputs cloned."""

    def __init__(self, graph: Any, inputs: list[tuple[int | str, torch.Tensor]], output: Any, keep: Any):
        self.graph, self.inputs, self.output, self.keep = graph, inputs, output, keep

    @classmethod
    def capture(cls, fn: Callable[[tuple, dict], Any], args: tuple, kwargs: dict,
                keep: Any) -> "_GraphedPass | None":
        static_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        static_kwargs = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(2):  # warm-up off the default stream, as torch.cuda.graph asks
                    fn(tuple(static_args), static_kwargs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.no_grad():
                output = fn(tuple(static_args), static_kwargs)
        except Exception:  # noqa: BLE001 - e.g. a host sync inside the pass: run it eagerly instead
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
            return None
        inputs = [(i, a) for i, a in enumerate(static_args) if isinstance(a, torch.Tensor)]
        inputs += [(k, v) for k, v in static_kwargs.items() if isinstance(v, torch.Tensor)]
        return cls(graph, inputs, output, (keep, static_args, static_kwargs))

    def __call__(self, args: tuple, kwargs: dict) -> Any:
        for key, static in self.inputs:
            static.copy_(args[key] if isinstance(key, int) else kwargs[key])
        self.graph.replay()
        # The next replay overwrites the static outputs; the caller keeps its own copy.
        return map_tensors(torch.Tensor.clone, self.output)


def apply_safetext(pipe: Any, file: str | os.PathLike | SafeTextFile, strength: float = 1.0,
                   mode: str = "embedding", enabled: bool = True, override_fingerprint: bool = False,
                   use_cuda_graphs: bool = True) -> SafeTextHandle:
    """Apply ``file`` to ``pipe``; see the module docstring. Raises ``FingerprintMismatch`` for another
    checkpoint's file. ``use_cuda_graphs=False`` runs the embedding blend's aligned pass eagerly."""
    loaded = file if isinstance(file, SafeTextFile) else SafeTextFile.load(file)
    return SafeTextHandle(pipe, loaded, strength, mode, enabled, override_fingerprint, use_cuda_graphs)
