"""AUTOMATIC1111: find the loaded checkpoint's text encoders and wrap their ``encode_with_transformers``.

* **Discovery.** SD 1.x: ``cond_stage_model`` (a transformers CLIP-L under ``wrapped.transformer``); SD 2.x:
  ``cond_stage_model`` (open_clip ViT-H under ``wrapped.model``); SDXL: ``conditioner.embedders[0/1]``
  (CLIP-L and open_clip bigG). Parameter names drop the webui's ``.wrapped`` hijack levels to meet the core's
  canonical names; open_clip weights are converted with ``safetext_core.models``.
* **Original weights.** The built-in Lora extension rewrites weights in place and keeps the originals in
  ``network_weights_backup``/``network_bias_backup``: fingerprints and training read those, so a LoRA never
  changes the checkpoint's identity.
* **The wrapper.** While SafeText is off it calls the original directly (bit for bit the webui's output).
  While on, it runs the original pass first (so the Lora extension applies its weights under the live
  parameters), then the same call with ``W + s * delta`` swapped into the parameter slots by
  :class:`safetext_core.weights.ShiftPlan` (restored even on error; nothing is edited in place), then blends.
* **Moderation signal.** Each wrapper call hands both outputs to :meth:`Active.record`; :func:`record_signals`
  groups them per prompt text, :func:`job_signals` gives them per prompt of the batch (the infotext's).
* **Fail closed.** When SafeText was asked for and cannot be applied, :func:`fail_closed` makes the job's
  prompt encoding raise instead of generating without it (the webui only prints errors raised by scripts).
  When a file changes more than the token embedding, every prompt's output must change: an aligned pass that
  equals the original one (the host read its weights from elsewhere) raises ``SafeTextNotApplied``.
* **Forge** (:mod:`.forge`) puts the same wrapper on its text-processing engines, through :func:`wrap` and
  :func:`activate_modules`.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from safetext_core.errors import SafeTextError, SafeTextFileError, SafeTextNotApplied, UnsupportedModel
from safetext_core.fingerprint import fingerprint_state_dict
from safetext_core.models import hf_to_openclip_names, normalise_hf_clip_keys, openclip_to_hf
from safetext_core.moderation import PromptSignal, SignalSum
from safetext_core.safetext_file import SafeTextFile
from safetext_core.weights import ShiftPlan, blend_outputs

from .args import Settings

_HF_TOP_LEVELS = ("embeddings.", "encoder.", "final_layer_norm.")


@dataclass
class HostEncoder:
    """One text encoder as the webui holds it."""

    name: str                 # the file's encoder name: clip_l, clip_h, clip_g
    module: torch.nn.Module   # the webui's embedder: has encode_with_transformers
    kind: str                 # "hf" (transformers CLIPTextModel) or "openclip"

    @property
    def prefix(self) -> str:
        return "wrapped.transformer." if self.kind == "hf" else "wrapped.model."


def _kind(module: Any) -> str | None:
    wrapped = getattr(module, "wrapped", None)
    if wrapped is None or not hasattr(module, "encode_with_transformers"):
        return None
    if isinstance(getattr(wrapped, "transformer", None), torch.nn.Module) and hasattr(wrapped, "tokenizer"):
        return "hf"
    model = getattr(wrapped, "model", None)
    if isinstance(model, torch.nn.Module) and hasattr(model, "transformer") and hasattr(model, "token_embedding"):
        return "openclip"
    return None


def host_encoders(sd_model: Any) -> tuple[str, list[HostEncoder]]:
    """The loaded checkpoint's family and its text encoders; :class:`UnsupportedModel` for anything else."""
    if sd_model is None:
        raise SafeTextError("no checkpoint is loaded")
    conditioner = getattr(sd_model, "conditioner", None)
    if conditioner is not None:
        embedders = [e for e in getattr(conditioner, "embedders", []) if _kind(e)]
        kinds = [_kind(e) for e in embedders]
        if kinds == ["hf", "openclip"]:
            return "sdxl", [HostEncoder("clip_l", embedders[0], "hf"), HostEncoder("clip_g", embedders[1], "openclip")]
        raise UnsupportedModel("SafeText supports SDXL base checkpoints (CLIP-L + OpenCLIP bigG); this one has text "
                               f"encoders {kinds or 'it does not recognise'}")
    cond = getattr(sd_model, "cond_stage_model", None)
    kind = _kind(cond)
    if kind == "hf":
        return "sd1", [HostEncoder("clip_l", cond, "hf")]
    if kind == "openclip":
        return "sd2", [HostEncoder("clip_h", cond, "openclip")]
    raise UnsupportedModel("SafeText supports SD 1.x, SD 2.x and SDXL checkpoints; the loaded model's text encoder "
                           f"({type(cond).__name__}) is not one it knows")


def host_name_map(enc: HostEncoder) -> dict[str, str]:
    """``{native name: host parameter name}``; native is canonical (HF) for CLIP-L, open_clip's for OpenCLIP."""
    out = {}
    for name, _ in enc.module.named_parameters():
        if not name.startswith(enc.prefix):
            continue
        native = ".".join(part for part in name[len(enc.prefix):].split(".") if part != "wrapped")
        if enc.kind == "hf" and native.startswith(_HF_TOP_LEVELS):
            native = "text_model." + native
        out[native] = name
    return out


def _lora_backups(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Original weights the built-in Lora extension keeps while its networks are applied in place."""
    out: dict[str, torch.Tensor] = {}
    for name, mod in module.named_modules():
        prefix = name + "." if name else ""
        weights = getattr(mod, "network_weights_backup", None)
        bias = getattr(mod, "network_bias_backup", None)
        is_mha = isinstance(mod, torch.nn.MultiheadAttention)
        if weights is not None:
            if is_mha:
                out[prefix + "in_proj_weight"], out[prefix + "out_proj.weight"] = weights[0], weights[1]
            else:
                out[prefix + "weight"] = weights
        if isinstance(bias, torch.Tensor):
            out[prefix + ("out_proj.bias" if is_mha else "bias")] = bias
    return out


def original_state(enc: HostEncoder) -> dict[str, torch.Tensor]:
    """The encoder's original weights in canonical naming (Lora backups in place of patched weights)."""
    params = dict(enc.module.named_parameters())
    backups = _lora_backups(enc.module)
    native = {n: backups.get(h, params[h]).detach() for n, h in host_name_map(enc).items()}
    return openclip_to_hf(native) if enc.kind == "openclip" else normalise_hf_clip_keys(native)


_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[Any, str]]" = weakref.WeakKeyDictionary()


def encoder_fingerprint(enc: HostEncoder, checkpoint: Any = None) -> str:
    """The encoder's fingerprint, cached per module and ``checkpoint`` (A1111 loads new weights into old modules)."""
    cached = _FINGERPRINTS.get(enc.module)
    if cached is None or cached[0] != checkpoint:
        cached = _FINGERPRINTS[enc.module] = (checkpoint, fingerprint_state_dict(original_state(enc)))
    return cached[1]


def checkpoint_key(sd_model: Any) -> Any:
    """What identifies the weights in ``sd_model``: its checkpoint's file name and hash, as the webui records them."""
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return (getattr(info, "filename", None), getattr(sd_model, "sd_model_hash", None))


def loaded_fingerprints(sd_model: Any) -> dict[str, str]:
    """``{encoder: fingerprint}`` of the checkpoint's original text-encoder weights."""
    _, encs = host_encoders(sd_model)
    return {enc.name: encoder_fingerprint(enc, checkpoint_key(sd_model)) for enc in encs}


def host_deltas(enc: HostEncoder, deltas: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The file's canonical differences under the host's parameter names (OpenCLIP: q/k/v fused)."""
    names = host_name_map(enc)
    params = dict(enc.module.named_parameters())
    native = hf_to_openclip_names(dict(deltas)) if enc.kind == "openclip" else dict(deltas)
    out = {}
    for key, value in native.items():
        host = names.get(key)
        if host is None:
            raise SafeTextFileError(f"the file changes {key}, which the loaded {enc.name} encoder does not have")
        if tuple(params[host].shape) != tuple(value.shape):
            raise SafeTextFileError(f"the file's {key} has shape {tuple(value.shape)}, the loaded {enc.name} "
                                    f"encoder's {tuple(params[host].shape)}: the file is for another model")
        out[host] = value
    return out


# ------------------------------------------------------------------------------------------------ applying
@dataclass
class Active:
    """The SafeText file in force for the current job."""

    settings: Settings
    file: SafeTextFile
    deltas: dict[str, dict[str, torch.Tensor]]  # encoder -> host parameter name -> difference
    modules: dict[str, torch.nn.Module]
    plans: dict[str, ShiftPlan] = field(default_factory=dict)  # rebuilt when a weight changes (a LoRA applied)
    scope: SignalSum | None = None  # the moderation signal of the get_learned_conditioning call running now
    signals: dict[str, PromptSignal] = field(default_factory=dict)  # prompt text -> signal, this job

    def record(self, base: Any, out: Any) -> None:
        """Both outputs of one encoder call, for the moderation signal (rows are the prompts being encoded)."""
        if self.scope is not None:
            try:
                self.scope.add(base, out)
            except ValueError:  # a call with other rows inside the same scope: not the prompts of this scope
                pass

    @property
    def shift(self) -> float:
        return self.settings.strength if self.settings.mode == "weight" else 1.0

    def plan(self, encoder: str) -> ShiftPlan:
        plan = self.plans.get(encoder)
        if plan is None or not plan.current():
            plan = self.plans[encoder] = ShiftPlan(self.modules[encoder], self.deltas[encoder], self.shift)
        return plan

    def moves_every_prompt(self, encoder: str) -> bool:
        """True when the file changes more than the token embedding: then every prompt's output must change."""
        return any(".embeddings." not in name for name in self.deltas.get(encoder, {}))

    def blend(self, base: Any, aligned: Any) -> Any:
        strength = self.settings.strength
        if self.settings.mode == "weight" or strength == 1.0:
            return aligned
        out = blend_outputs(base, aligned, strength)
        pooled, pooled_aligned = getattr(base, "pooled", None), getattr(aligned, "pooled", None)
        if pooled is not None and pooled_aligned is not None:  # SDXL bigG: the pooled vector rides on the tensor
            out.pooled = blend_outputs(pooled, pooled_aligned, strength)
        return out


class _State:
    active: Active | None = None
    failed_model: Any = None  # weak reference to the model whose get_learned_conditioning refuses
    signal_model: Any = None  # weak reference to the model whose get_learned_conditioning records the signal


_STATE = _State()


def _make_wrapper(encoder: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def encode_with_transformers(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        active = _STATE.active
        if active is None or not active.deltas.get(encoder) or active.settings.strength == 0.0:
            return original(tokens, *args, **kwargs)
        # The original pass first, always: the Lora extension applies its in-place weights there, under the
        # live parameters, never under the shifted ones.
        base = original(tokens, *args, **kwargs)
        with active.plan(encoder).swapped():
            aligned = original(tokens, *args, **kwargs)
        if active.moves_every_prompt(encoder) and _same(base, aligned):
            # The host computed the aligned pass without the shifted weights (it reads them from somewhere
            # else): generating now would be unprotected while the infotext says SafeText was on.
            raise SafeTextNotApplied(
                f"SafeText's change to the {encoder} text encoder did not reach the host's prompt encoding (the "
                "aligned pass gave exactly the original output); nothing was generated. Turn SafeText off to "
                "generate without it, or report this host version")
        out = active.blend(base, aligned)
        active.record(base, out)  # the moderation signal: the original and the passed-on output are at hand
        return out

    encode_with_transformers.safetext_wrapper = True
    return encode_with_transformers


def _same(base: Any, aligned: Any) -> bool:
    """Exactly equal outputs, the pooled vector riding on the tensor included (SDXL's bigG)."""
    if isinstance(base, torch.Tensor) and isinstance(aligned, torch.Tensor):
        if getattr(base, "pooled", None) is not None and getattr(aligned, "pooled", None) is not None \
                and not _same(base.pooled, aligned.pooled):
            return False
        return base.shape == aligned.shape and torch.equal(base, aligned)
    if isinstance(base, (tuple, list)) and isinstance(aligned, (tuple, list)) and len(base) == len(aligned):
        return all(_same(a, b) for a, b in zip(base, aligned))
    return False


def wrap(owner: Any, encoder: str) -> None:
    """Wrap ``owner.encode_with_transformers`` (on the instance, once) for ``encoder``; idle until activated."""
    current = owner.__dict__.get("encode_with_transformers")
    if current is None or not getattr(current, "safetext_wrapper", False):
        owner.encode_with_transformers = _make_wrapper(encoder, owner.encode_with_transformers)


def install_wrappers(sd_model: Any) -> tuple[str, list[HostEncoder]]:
    """Wrap each text encoder's ``encode_with_transformers`` once (on the instance); idle until :func:`activate`."""
    family, encs = host_encoders(sd_model)
    for enc in encs:
        wrap(enc.module, enc.name)
    return family, encs


def activate(sd_model: Any, settings: Settings, file: SafeTextFile) -> None:
    """Make ``file`` (already checked against the loaded fingerprints) act on the next encoder calls."""
    family, encs = install_wrappers(sd_model)
    if file.family != family:
        raise SafeTextFileError(f"SafeText file {settings.file!r} is for {file.family}, the loaded checkpoint is "
                                f"{family}")
    deltas = {enc.name: host_deltas(enc, file.deltas.get(enc.name, {})) for enc in encs}
    activate_modules(settings, file, deltas, {enc.name: enc.module for enc in encs})


def activate_modules(settings: Settings, file: SafeTextFile, deltas: dict[str, dict[str, torch.Tensor]],
                     modules: dict[str, torch.nn.Module]) -> None:
    """Put ``file`` in force for wrappers made by :func:`wrap`: ``deltas`` per encoder under the parameter names
    of ``modules[encoder]`` (also used by the Forge adapter)."""
    _STATE.active = Active(settings, file, deltas, modules)


def is_active() -> bool:
    return _STATE.active is not None


def fail_closed(sd_model: Any, message: str) -> None:
    """Make this job's prompt encoding raise ``message`` instead of running without SafeText."""
    if sd_model is None:
        return

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise SafeTextNotApplied(message)

    refuse.safetext_refuse = True
    sd_model.get_learned_conditioning = refuse
    _STATE.failed_model = weakref.ref(sd_model)


def record_signals(sd_model: Any) -> None:
    """Collect the moderation signal per prompt text while SafeText is in force for this job: the model's
    ``get_learned_conditioning(texts)`` gets a wrapper (on the instance, removed by :func:`deactivate`) that
    opens a :class:`SignalSum` for its rows; every encoder call inside (chunks of long prompts, SDXL's two
    encoders) adds to it."""
    current = sd_model.__dict__.get("get_learned_conditioning") if sd_model is not None else None
    original = getattr(sd_model, "get_learned_conditioning", None)
    if current is not None or original is None:  # fail_closed's refusal or ours already; or nothing to wrap
        return

    def get_learned_conditioning(texts: Any, *args: Any, **kwargs: Any) -> Any:
        active = _STATE.active
        if active is None:
            return original(texts, *args, **kwargs)
        active.scope = scope = SignalSum()
        try:
            return original(texts, *args, **kwargs)
        finally:
            active.scope = None
            prompts = [str(t) for t in texts] if isinstance(texts, (list, tuple)) else []
            for row, signal in enumerate(scope.signals()):
                if row < len(prompts):
                    active.signals[prompts[row]] = signal

    get_learned_conditioning.safetext_signal = True
    sd_model.get_learned_conditioning = get_learned_conditioning
    _STATE.signal_model = weakref.ref(sd_model)


def job_signals(prompts: list[str], negative_prompts: list[str] | None = None) -> list[PromptSignal | None]:
    """Per prompt of the batch, the signal of its text; a prompt whose text was not encoded as such (prompt
    editing ``[a:b:5]``, ``AND``) gets the lowest cosine of the texts that are not negative prompts."""
    active = _STATE.active
    if active is None or not active.signals:
        return []
    negatives = set(negative_prompts or [])
    others = [s for text, s in active.signals.items() if text not in negatives]
    fallback = min(others, key=lambda s: s.cosine) if others else None
    return [active.signals.get(prompt, fallback) for prompt in prompts]


def deactivate() -> None:
    """No file in force, and the model's own prompt encoding back (after :func:`fail_closed`)."""
    _STATE.active = None
    ref, _STATE.signal_model = _STATE.signal_model, None
    model = ref() if ref is not None else None
    current = model.__dict__.get("get_learned_conditioning") if model is not None else None
    if current is not None and getattr(current, "safetext_signal", False):
        del model.__dict__["get_learned_conditioning"]
    ref, _STATE.failed_model = _STATE.failed_model, None
    model = ref() if ref is not None else None
    current = model.__dict__.get("get_learned_conditioning") if model is not None else None
    if current is not None and getattr(current, "safetext_refuse", False):
        del model.__dict__["get_learned_conditioning"]


def forget_fingerprints() -> None:
    """Drop cached fingerprints (a checkpoint was loaded, possibly into the same modules)."""
    _FINGERPRINTS.clear()
