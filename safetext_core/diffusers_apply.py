"""Apply a SafeText file to a diffusers pipeline: SD 1.x / 2.x (``StableDiffusionPipeline``), SDXL, Flux.1
(``FluxPipeline``), SD 3 / 3.5 (``StableDiffusion3Pipeline``), Chroma, Lumina 2, Z-Image, Flux.2 Klein and Qwen-Image
(``ChromaPipeline``, ``Lumina2Pipeline``, ``ZImagePipeline``, ``Flux2KleinPipeline``, ``QwenImagePipeline``, and their
img2img / inpaint / ControlNet variants, which read the encoders the same way).

``apply_safetext(pipe, "file.safetensors", strength=1.0, mode="embedding")`` returns a handle whose
``enabled``, ``strength`` and ``mode`` can be changed between generations, whose ``local(...)`` sets them
for the calls of one thread (or asyncio task) only, and whose ``remove()`` restores the pipeline. The
file is checked first: its family against the pipeline's class and encoders, every text encoder the pipeline holds
must be one the family aligns (never half-protect: Flux's and SD 3's CLIP-L is SD 1.x's, so an SD 1.x file would
pass its fingerprint there and leave T5 alone), then the fingerprints and every difference against the encoders'
weights (:meth:`SafeTextFile.validate_against`). Flux.2 [dev] and Qwen-Image-Edit pipelines, and T5 / LLM files on
pipelines of other classes, are refused by name (:class:`UnsupportedModel`).

**What is blended.** The embedding blend lerps every floating-point tensor of the encoder's output: the pooled
vector Flux reads, the ``hidden_states[k]`` the LLM pipelines read (Lumina 2 / Z-Image -2, Qwen-Image -1, Klein 9, 18
and 27) as well as the last hidden state; what a pipeline does with them afterwards (select, cut, join, pad) is
linear, so ``encode_prompt`` hands on exactly ``lerp(original, aligned, s)``. Files name tensors as ComfyUI does
(``text_model.*``, ``model.layers.*``); the pipeline's transformers classes are matched to those names
(:func:`safetext_core.models.canonical_module_names`: a bare ``Qwen3Model`` / ``Gemma2Model`` has no ``model.``,
``Qwen2_5_VLForConditionalGeneration`` nests ``model.language_model.``), and a tied weight (T5's ``shared`` /
``encoder.embed_tokens``) is shifted in every slot that holds it.

**Nothing shared is ever written.** The handle wraps each encoder's ``forward`` on the instance; the
aligned pass runs the encoder class's own ``forward`` on a *shadow* of the encoder (a copy of its module
tree that shares every tensor, buffer and hook except the shifted parameters ``W + s * delta``, see
:class:`safetext_core.weights.ShiftPlan`). So any number of threads can share one pipeline, each with its
own settings: a call reads the settings once when it starts, and never sees another thread's weights or
strength; the encoder's own parameters are never swapped or edited, so ``remove()`` (or a crash at any
moment) cannot leave a weight modified. Disabled (or strength 0) calls run the original forward directly:
bit-for-bit the original output. Any other pipeline holding the same encoder object gets SafeText too
(the wrapper is on the encoder, as a LoRA fused into it would be); docs/reliability.md has the details.

**accelerate.** With ``enable_model_cpu_offload()`` (before or after ``apply_safetext``) the handle sits
under accelerate's hook, so the hook moves the encoder and the inputs before either pass and ``remove()``
leaves the hook in place. ``enable_sequential_cpu_offload()`` hooks every sub-module, which the aligned
pass cannot run under: it is refused (at apply time, or failing closed at the first aligned call).

Cost per encoder call (see benchmarks/): the weight blend is one pass, like the original. The embedding
blend at a strength strictly between 0 and 1 needs the original and the aligned pass; on CUDA the aligned
one is replayed from a CUDA graph captured on first use for each input shape, so it costs the GPU's few
hundred microseconds rather than a second round of kernel launches. Anything the capture cannot handle
falls back to the plain pass.

**Moderation signal.** ``handle.last_signal``: per prompt of the calling thread's last ``encode_prompt``, whether
SafeText moved it and its cosine to the original conditioning (:mod:`safetext_core.moderation`), measured where
the original pass runs anyway; ``signal=True`` pays that pass at strength 1 and in the weight blend too.

(Over 400 lines: the handle, its wrapper under accelerate's hook and the CUDA-graph replay share the one call
path that every encoder call takes; split apart they would each need the others' internals.)
"""
from __future__ import annotations

import contextvars
import functools
import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch import nn

from .errors import SafeTextError, SafeTextFileError, UnsupportedModel
from .weights import ShiftPlan, blend_outputs, check_mode, check_strength, map_tensors
from .families import FAMILIES, EncoderSpec, Family, diffusers_families, get_family
from .fingerprint import fingerprint_state_dict
from .models import canonical_module_names
from .moderation import PromptSignal, Recorder, hidden_state
from .safetext_file import SafeTextFile

MAX_GRAPHS = 16  # captured graphs kept per handle (each holds its static inputs, outputs and memory pool)
MAX_PLANS = 3    # shifted weight sets kept per encoder: shift 1 (the embedding blend) and two weight-blend strengths


# Where diffusers pipelines keep their text encoders (HiDream has four).
TEXT_ENCODER_SLOTS = ("text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4")


def _check_pipeline(pipe: Any, family: Family) -> None:
    """Refuse a file that would not protect every text encoder the pipeline reads (:class:`UnsupportedModel`).

    Fingerprints alone cannot tell: Flux's and SD 3's CLIP-L is SD 1.x's and SDXL's, and Z-Image's Qwen3-4B may be
    Flux.2 Klein 4B's, whose pipeline reads other layers of it. So the pipeline's class must carry the file's family
    (:func:`~safetext_core.families.diffusers_families`; a class in no entry: the CLIP families, SD 1.x / 2.x / SDXL),
    and every text encoder the pipeline holds must be one the family aligns."""
    cls = type(pipe).__name__
    try:
        carried = diffusers_families(cls)
    except UnsupportedModel as why:
        raise UnsupportedModel(f"apply_safetext does not handle a {cls}: {why}") from None
    if not carried:
        carried = tuple(f.name for f in FAMILIES.values()
                        if f.diffusion and all(spec.kind == "clip" for spec in f.encoders))
    if family.name not in carried:
        titles = " or ".join(get_family(f).title for f in carried)
        raise UnsupportedModel(f"a {family.title} SafeText file does not fit a {cls}, which carries a {titles} model"
                               " (apply_safetext takes the diffusers pipelines of SD 1.x / 2.x / SDXL, Flux.1, SD 3, "
                               "Chroma, Lumina 2, Z-Image, Flux.2 Klein and Qwen-Image with a file of their family)")
    aligned = {spec.diffusers[0] for spec in family.encoders}
    others = [f"{slot} ({type(module).__name__})" for slot in TEXT_ENCODER_SLOTS
              if slot not in aligned and (module := getattr(pipe, slot, None)) is not None]
    if others:  # never half-protect: the other encoder would pass its prompt on unchanged
        raise UnsupportedModel(f"this {cls} also reads {', '.join(others)}, which a {family.title} SafeText file "
                               "does not align; use a file trained for this pipeline's model")


class Settings(NamedTuple):
    enabled: bool
    strength: float
    mode: str


class SafeTextHandle:
    """Live control over a SafeText file applied to a pipeline."""

    def __init__(self, pipe: Any, file: SafeTextFile, strength: float, mode: str, enabled: bool,
                 override_fingerprint: bool, use_cuda_graphs: bool = True, signal: bool = False):
        family = get_family(file.family)
        if not family.diffusion:
            raise SafeTextFileError(f"a {file.family} SafeText file cannot be applied to a diffusion pipeline")
        _check_pipeline(pipe, family)
        self.file = file
        self._settings = Settings(bool(enabled), check_strength(strength), check_mode(mode))
        self._local: contextvars.ContextVar[Settings | None] = contextvars.ContextVar(f"safetext-{id(self)}",
                                                                                      default=None)
        self._lock = threading.RLock()
        self._specs = {spec.name: spec for spec in family.encoders}
        self._modules: dict[str, nn.Module] = {}
        for spec in family.encoders:
            module = getattr(pipe, spec.diffusers[0], None)
            if module is None:
                raise SafeTextFileError(f"this {type(pipe).__name__} has no {spec.diffusers[0]} for the file's "
                                        f"{spec.name} encoder")
            self._modules[spec.name] = module
        for module in self._modules.values():
            _check_wrappable(module)
        # The file names tensors as ComfyUI does (``text_model.*``, ``model.layers.*``); the pipeline's transformers
        # classes name them their own way (a bare Qwen3Model has no ``model.``, Qwen-Image's encoder nests
        # ``model.language_model.``): fingerprints and checks read the canonical names, the shifts use the module's.
        names = {e: canonical_module_names(m, self._specs[e]) for e, m in self._modules.items()}
        states = {}
        for encoder, module in self._modules.items():
            own = module.state_dict()
            states[encoder] = {name: own[key] for name, key in names[encoder].items()}
        self.warnings = file.check_fingerprints({e: fingerprint_state_dict(s) for e, s in states.items()},
                                                override=override_fingerprint)
        file.validate_against(states)  # names, shapes, dtypes, magnitudes: whatever the fingerprint says
        self._deltas = {e: {names[e][p]: d for p, d in file.deltas.get(e, {}).items()} for e in self._modules}
        self._plans: dict[tuple[str, float], ShiftPlan] = {}
        self.use_cuda_graphs = bool(use_cuda_graphs)
        self._graphs: dict[tuple, _GraphedPass | None] = {}  # None: this call shape runs eagerly
        self._wrappers: dict[str, _Wrapper] = {}
        for encoder, module in self._modules.items():
            self._wrappers[encoder] = _Wrapper.install(self, encoder, module)
        # The moderation signal (safetext_core.moderation): per thread, the prompt rows of the last encode_prompt.
        self.signal = bool(signal)  # also at strength 1 / weight blend, where it costs the original pass
        self._recorder: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar(f"st-rec-{id(self)}",
                                                                                         default=None)
        self._last: contextvars.ContextVar[list | None] = contextvars.ContextVar(f"st-sig-{id(self)}", default=None)
        self._pipe = pipe if callable(getattr(pipe, "encode_prompt", None)) else None
        if self._pipe is not None:
            pipe.encode_prompt = self._recording(pipe.encode_prompt)

    @property
    def last_signal(self) -> "list[PromptSignal] | None":
        """Per prompt of this thread's last ``encode_prompt`` (the positive prompts, not the negative ones), or of
        its last encoder call outside one: whether SafeText moved it (``.moved``) and its ``.cosine`` to the
        original conditioning. Measured whenever the original pass runs anyway (embedding blend, 0 < s < 1), and
        at strength 1 or in the weight blend when ``signal=True`` (one more text-encoder pass per call)."""
        return self._last.get()

    def _recording(self, encode_prompt: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(encode_prompt)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            token = self._recorder.set(Recorder())
            try:
                return encode_prompt(*args, **kwargs)
            finally:
                recorder = self._recorder.get()
                self._recorder.reset(token)
                if recorder is not None and recorder.groups:
                    self._last.set(recorder.signals(0))
        recorded.safetext_original = encode_prompt
        return recorded

    def _record(self, encoder: str, original: Any, output: Any, kwargs: dict) -> None:
        spec, mask = self._specs[encoder], kwargs.get("attention_mask")
        original, output = _consumed(original, spec, mask), _consumed(output, spec, mask)
        recorder = self._recorder.get()
        if recorder is None:  # an encoder call outside encode_prompt: its own signal
            recorder = Recorder()
            recorder.add(encoder, original, output)
            self._last.set(recorder.signals(0))
        else:
            recorder.add(encoder, original, output)

    # ------------------------------------------------------------------ controls
    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._settings = self._settings._replace(enabled=bool(value))

    @property
    def strength(self) -> float:
        return self._settings.strength

    @strength.setter
    def strength(self, value: float) -> None:
        self._settings = self._settings._replace(strength=check_strength(value))

    @property
    def mode(self) -> str:
        return self._settings.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._settings = self._settings._replace(mode=check_mode(value))

    @contextmanager
    def local(self, enabled: bool | None = None, strength: float | None = None,
              mode: str | None = None) -> Iterator["SafeTextHandle"]:
        """Settings for the encoder calls of this thread (or asyncio task) only, e.g. one web request's::

            with handle.local(strength=0.5):
                image = pipe(prompt).images[0]

        Unset ones follow the handle's. Other threads keep theirs; nothing is shared or written."""
        base = self._local.get() or self._settings
        chosen = Settings(base.enabled if enabled is None else bool(enabled),
                          base.strength if strength is None else check_strength(strength),
                          base.mode if mode is None else check_mode(mode))
        token = self._local.set(chosen)
        try:
            yield self
        finally:
            self._local.reset(token)

    def current_settings(self) -> Settings:
        """What a call starting now in this thread uses (read once per call, so it never mixes two)."""
        return self._local.get() or self._settings

    def remove(self) -> None:
        """Take SafeText off: each wrapper is unlinked from wherever it sits (under accelerate's hook too)
        and, should anything still hold it, passes calls straight through from now on."""
        with self._lock:
            for wrapper in self._wrappers.values():
                wrapper.uninstall()
            self._wrappers.clear()
            self._modules.clear()
            self._plans.clear()
            self._graphs.clear()
            pipe, self._pipe = self._pipe, None
            current = pipe.__dict__.get("encode_prompt") if pipe is not None else None
            if current is not None and hasattr(current, "safetext_original"):
                del pipe.__dict__["encode_prompt"]

    def __enter__(self) -> "SafeTextHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ one call
    def _call(self, encoder: str, module: nn.Module, original: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        enabled, strength, mode = self.current_settings()
        if not enabled or strength == 0.0:
            return original(*args, **kwargs)
        # Weight blend: one pass with W + s * delta. Embedding blend: the fully aligned encoder
        # (alone at s = 1, where the blend equals it), lerped with the original pass.
        plan = self._plan(encoder, module, strength if mode == "weight" else 1.0)
        if mode == "weight" or strength == 1.0:
            out = plan.run(args, kwargs)
            if self.signal:
                self._record(encoder, original(*args, **kwargs), out, kwargs)
            return out
        output = original(*args, **kwargs)
        graphed = self._graphed(encoder, module, plan, args, kwargs)
        aligned = graphed(args, kwargs) if graphed is not None else plan.run(args, kwargs)
        blended = blend_outputs(output, aligned, strength)
        self._record(encoder, output, blended, kwargs)
        return blended

    def _plan(self, encoder: str, module: nn.Module, shift: float) -> ShiftPlan:
        key = (encoder, shift)
        plan = self._plans.get(key)
        if plan is not None and plan.current():
            return plan
        with self._lock:  # one thread builds; the others wait for it rather than building their own
            plan = self._plans.get(key)
            if plan is None or not plan.current():
                _check_submodules(module)  # e.g. sequential offload hooked on since: fail closed, clearly
                plan = ShiftPlan(module, self._deltas[encoder], shift)
                plan.module  # the shadow, built here so no call waits on it
            plans = {k: v for k, v in self._plans.items() if k != key}
            kept = [k for k in plans if k[0] == encoder and k[1] != 1.0]
            for old in kept[: max(0, len(kept) - (MAX_PLANS - 2))]:  # shift 1 and the newest others stay
                del plans[old]
            plans[key] = plan
            self._plans = plans  # replaced whole: readers never see a dictionary being changed
        return plan

    def _graphed(self, encoder: str, module: nn.Module, plan: ShiftPlan, args: tuple,
                 kwargs: dict) -> "_GraphedPass | None":
        """The CUDA graph of the fully aligned pass for this call's shapes, captured on first use."""
        if not self.use_cuda_graphs or torch.is_grad_enabled() or torch.is_autocast_enabled("cuda"):
            return None  # graphs are captured for plain inference only
        if "_hf_hook" in module.__dict__:
            return None  # accelerate moves the weights between calls: a graph would read stale addresses
        signature = _call_signature(args, kwargs)
        if signature is None:
            return None
        # ``plan`` is current (just checked) and watches every tensor the graph reads by address; a
        # rebuilt plan means a new graph.
        key = (encoder, signature, plan)
        graphs = self._graphs
        if key in graphs:
            return graphs[key]
        with self._lock:
            if key not in self._graphs:
                # Drop this encoder's stale graphs (and the memory they hold) before capturing a new one.
                graphs = {k: g for k, g in self._graphs.items() if k[:2] != (encoder, signature)}
                while len(graphs) >= MAX_GRAPHS:  # many prompt shapes: forget the oldest graph
                    graphs.pop(next(iter(graphs)))
                graphs[key] = _GraphedPass.capture(plan.run, args, kwargs, plan)
                self._graphs = graphs
            return self._graphs[key]


def _consumed(output: Any, spec: EncoderSpec, mask: Any = None) -> Any:
    """What the family consumes of a transformers output, for the moderation signal: its targets' hidden states
    (joined along features: Klein's three layers), the pooled vector alone as one position (Flux's CLIP-L), the
    last hidden state when the caller asked for no hidden states; the positions the encoder masks (an attention
    mask handed to a masked family's encoder) zeroed, so they add nothing to the cosine."""
    if isinstance(output, torch.Tensor):
        return output
    if spec.pooled_only:
        pooled = getattr(output, "pooler_output", None)
        return pooled.unsqueeze(1) if isinstance(pooled, torch.Tensor) else None
    hidden = getattr(output, "hidden_states", None)
    last = getattr(output, "last_hidden_state", None)
    picked: list[torch.Tensor] = []
    for target in spec.targets if spec.join_targets else spec.targets[:1]:  # the others: clip skip's alternative
        if target.layer_from_end == 1 and target.final_norm and isinstance(last, torch.Tensor):
            picked.append(last)
        elif isinstance(hidden, (tuple, list)) and hidden:
            index = target.index if target.index is not None else -target.layer_from_end
            if -len(hidden) <= index < len(hidden):
                picked.append(hidden[index])
    found = torch.cat(picked, dim=-1) if picked else hidden_state(output)
    if found is not None and spec.uses_mask and isinstance(mask, torch.Tensor) and mask.shape == found.shape[:2]:
        found = found * mask.unsqueeze(-1).to(found.dtype)
    return found


# ---------------------------------------------------------------------------------- the wrapper

def _plain(module: nn.Module, forward: Any) -> bool:
    """``forward`` is the module's class ``forward`` bound to it (what accelerate leaves after removing a hook)."""
    return getattr(forward, "__self__", None) is module and getattr(forward, "__func__", None) is type(module).forward


def _accelerate_hooked(module: nn.Module) -> bool:
    forward = module.__dict__.get("forward")
    return ("_hf_hook" in module.__dict__ and "_old_forward" in module.__dict__
            and isinstance(forward, functools.partial) and forward.args[:1] == (module,))


def _check_wrappable(module: nn.Module) -> None:
    slot = "_old_forward" if _accelerate_hooked(module) else "forward"
    current = module.__dict__.get(slot)
    if isinstance(current, _Wrapper):
        raise SafeTextError(f"{type(module).__name__} already has a SafeText handle; remove() it first")
    if current is not None and not _plain(module, current):
        raise SafeTextError(f"{type(module).__name__} already has a patched forward that is not accelerate's hook "
                            "(another library's wrapper?); SafeText cannot run its aligned pass under it")
    _check_submodules(module)


def _check_submodules(module: nn.Module) -> None:
    for name, child in module.named_modules():
        if name and ("forward" in child.__dict__ or "_hf_hook" in child.__dict__):
            raise SafeTextError(
                f"the encoder's sub-module {name} ({type(child).__name__}) has a patched forward (e.g. "
                "enable_sequential_cpu_offload's hooks); SafeText's aligned pass cannot run under it. Use "
                "enable_model_cpu_offload, or no offload")


class _Wrapper:
    """The encoder's instance-level ``forward``: directly on the module, or, when accelerate has hooked it,
    in accelerate's ``_old_forward`` slot (under the hook, where it would be had SafeText come first).

    No ``__dict__`` (accelerate copies a wrapped forward's ``__dict__`` onto its own); ``__wrapped__`` is the
    class's forward, so ``inspect.signature`` sees the encoder's real signature."""

    __slots__ = ("handle", "encoder", "module", "previous", "original", "__wrapped__")

    def __init__(self, handle: SafeTextHandle, encoder: str, module: nn.Module, previous: Any):
        self.handle: SafeTextHandle | None = handle
        self.encoder = encoder
        self.module = module
        self.previous = previous  # what our slot held (None: nothing, i.e. the class's forward)
        self.original = type(module).forward.__get__(module)
        self.__wrapped__ = self.original

    @classmethod
    def install(cls, handle: SafeTextHandle, encoder: str, module: nn.Module) -> "_Wrapper":
        slot = "_old_forward" if _accelerate_hooked(module) else "forward"
        wrapper = cls(handle, encoder, module, module.__dict__.get(slot))
        module.__dict__[slot] = wrapper
        return wrapper

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        handle = self.handle
        if handle is None:  # removed, but something installed after us still calls us: pass straight through
            return self.original(*args, **kwargs)
        return handle._call(self.encoder, self.module, self.original, args, kwargs)

    def __deepcopy__(self, memo: dict) -> Any:
        """A deep copy of the encoder is another, plain encoder: SafeText stays on this one."""
        copied = memo.get(id(self.module))
        return type(copied).forward.__get__(copied) if copied is not None else self.original

    def uninstall(self) -> None:
        """Put back what would be there had SafeText never been applied, wherever accelerate has moved us
        (``remove_hook_from_module`` moves ``_old_forward`` back to ``forward``; hooking moves ``forward`` to
        ``_old_forward``); accelerate's own hook is left alone."""
        self.handle = None
        state = self.module.__dict__
        for slot in ("forward", "_old_forward"):
            if state.get(slot) is self:
                if self.previous is not None:
                    state[slot] = self.previous
                elif slot == "forward":
                    del state[slot]
                else:  # accelerate hooked after us; without us it would hold the plain forward
                    state[slot] = self.original


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
    """One captured CUDA graph of a pass: static inputs are refilled, the graph replayed, outputs cloned.

    Replays are serialised (one set of static inputs and outputs), and each waits on the stream of the one
    before, so threads on different CUDA streams never overwrite each other's inputs or outputs."""

    def __init__(self, graph: Any, inputs: list[tuple[int | str, torch.Tensor]], output: Any, keep: Any):
        self.graph, self.inputs, self.output, self.keep = graph, inputs, output, keep
        self.lock = threading.Lock()
        self.done: Any = None  # CUDA event recorded after the last replay's outputs were copied

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
            # thread_local: another thread's CUDA work meanwhile neither breaks this capture nor is refused
            with torch.cuda.graph(graph, capture_error_mode="thread_local"), torch.no_grad():
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
        with self.lock:
            stream = torch.cuda.current_stream()
            if self.done is not None:
                stream.wait_event(self.done)
            for key, static in self.inputs:
                static.copy_(args[key] if isinstance(key, int) else kwargs[key])
            self.graph.replay()
            # The next replay overwrites the static outputs; the caller keeps its own copy.
            output = map_tensors(torch.Tensor.clone, self.output)
            self.done = torch.cuda.Event()
            self.done.record(stream)
            return output


def apply_safetext(pipe: Any, file: str | os.PathLike | SafeTextFile, strength: float = 1.0,
                   mode: str = "embedding", enabled: bool = True, override_fingerprint: bool = False,
                   use_cuda_graphs: bool = True, signal: bool = False) -> SafeTextHandle:
    """Apply ``file`` to ``pipe``; see the module docstring. Raises ``FingerprintMismatch`` for another
    checkpoint's file and :class:`SafeTextFileError` for a file that does not fit the encoders (checked even
    with ``override_fingerprint``). ``use_cuda_graphs=False`` runs the embedding blend's aligned pass eagerly;
    ``signal=True`` measures :attr:`SafeTextHandle.last_signal` also where it costs a pass."""
    loaded = file if isinstance(file, SafeTextFile) else SafeTextFile.load(file)
    return SafeTextHandle(pipe, loaded, strength, mode, enabled, override_fingerprint, use_cuda_graphs, signal)
