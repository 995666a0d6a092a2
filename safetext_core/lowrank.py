"""Low-rank (LoRA) alignment: adapters trained in place of full weights, and the keys the factors are saved under.

Training (``AlignConfig.rank > 0``): every ``nn.Linear`` whose module name matches one of the target regular
expressions (default: every linear layer inside the transformer blocks: CLIP's q/k/v/out projections and MLP,
BERT's query/key/value/output/intermediate) gets two factors, ``lora_down`` (rank x in, Kaiming-uniform) and
``lora_up`` (out x rank, zero: the adapted encoder starts as the original), and a forward hook that adds
``(x @ down.T @ up.T) * alpha / rank`` to the layer's output. The base weights stay frozen and are never
written. This is the same update as PEFT's LoRA ``Linear`` (no dropout); a hook on the existing module keeps
every parameter name, so validation, mining and resume work on the trainee unchanged, and nothing needs PEFT
(the hosts' Python environments may lack it).

Compression (``AlignConfig.lowrank_method = "compress"``, the choice of ``"auto"`` for every encoder that full
fine-tuning fits): the run fine-tunes the full weights as a rank-0 run does, then each targeted linear weight's
change is cut to its best rank-``rank`` approximation (:func:`truncated_svd`), and every other change (token
embeddings, norms, biases: no host's LoRA loader takes them) is left out (:func:`compress`). On the real MiniLM this
keeps harmless prompts far better than adapters trained directly (docs/lowrank.md); it needs full fine-tuning's
memory, so the 4-8B encoders keep the adapters.

Saving: ``up`` is stored already multiplied by ``alpha / rank`` with ``alpha = rank`` in the file, so a host
that applies ``up @ down * alpha / rank`` (ComfyUI, A1111, Forge) computes the same difference whatever it
does with ``alpha``. Key names (:func:`factor_stem`), chosen so each host's stock LoRA loader applies the
file as it is:

* SD 1.x / 2.x / SDXL, the six block projections: the kohya names ``lora_te_`` (SD 1.x CLIP-L, SD 2.x
  OpenCLIP-H), ``lora_te1_`` / ``lora_te2_`` (SDXL CLIP-L / bigG) + ``text_model_encoder_layers_<N>_<proj>``
  (``self_attn_q_proj``, ``_k_proj``, ``_v_proj``, ``_out_proj``, ``mlp_fc1``, ``mlp_fc2``). ComfyUI 0.3.64
  (``comfy/lora.py`` ``model_lora_keys_clip``), A1111 v1.10.1 and Forge (``extensions-builtin/Lora``) all map
  these; A1111 applies the OpenCLIP (fused ``in_proj``) layers only when q, k, v and out of a layer are all
  present, which :func:`check_targets` enforces.
* anything else (other families, other layers): ComfyUI's generic ``text_encoders.<encoder>.transformer.<param>``,
  which only ComfyUI's loader maps.
"""
from __future__ import annotations

import collections.abc
import math
import re
from typing import Mapping, Sequence

import torch
from torch import nn

from .errors import ConfigError

DEFAULT_TARGETS: tuple[str, ...] = (r"layers?\.\d+\.",)  # every linear layer inside the transformer blocks

# HF CLIP block projection -> kohya suffix (the table every host's loader uses for text-encoder LoRAs).
KOHYA_SUFFIX = {"self_attn.q_proj": "self_attn_q_proj", "self_attn.k_proj": "self_attn_k_proj",
                "self_attn.v_proj": "self_attn_v_proj", "self_attn.out_proj": "self_attn_out_proj",
                "mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2"}
_HF_BLOCK = re.compile(r"^text_model\.encoder\.layers\.(\d{1,4})\.(self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])\.weight$")
_KOHYA_KEY = re.compile(r"^(lora_te[12]?_)text_model_encoder_layers_(\d{1,4})_(self_attn_(?:q|k|v|out)_proj|mlp_fc[12])"
                        r"\.(lora_up\.weight|lora_down\.weight|alpha)$")
_FROM_KOHYA = {v: k for k, v in KOHYA_SUFFIX.items()}
_ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")


# ------------------------------------------------------------------------------------------ key names
def factor_stem(encoder: str, param: str, a1111_prefix: str = "") -> str:
    """The key stem (before ``.lora_up.weight`` / ``.lora_down.weight`` / ``.alpha``) of ``param``'s factors."""
    match = _HF_BLOCK.match(param)
    if a1111_prefix and match:
        return f"{a1111_prefix}text_model_encoder_layers_{match.group(1)}_{KOHYA_SUFFIX[match.group(2)]}"
    stem = param[: -len(".weight")] if param.endswith(".weight") else param
    return f"text_encoders.{encoder}.transformer.{stem}"


def parse_kohya_key(key: str, prefixes: Mapping[str, str]) -> tuple[str, str, str] | None:
    """``(encoder, HF parameter, part)`` of a kohya text-encoder factor key, for the family's ``{prefix: encoder}``;
    ``None`` when ``key`` is not one (part: ``lora_up.weight``, ``lora_down.weight`` or ``alpha``)."""
    match = _KOHYA_KEY.match(key)
    if not match or match.group(1) not in prefixes:
        return None
    prefix, layer, suffix, part = match.groups()
    return prefixes[prefix], f"text_model.encoder.layers.{int(layer)}.{_FROM_KOHYA[suffix]}.weight", part


def expand(up: torch.Tensor, down: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
    """The difference ``up @ down * alpha / rank`` in float32 (``alpha`` None: ``rank``), as every host computes
    it; the one formula training, loading and evaluation share, so they agree bit for bit."""
    up, down = up.float(), down.float()
    rank = up.shape[1]
    return (up @ down) * ((rank if alpha is None else alpha) / rank)


# ------------------------------------------------------------------------------------------ training
def check_targets(model: nn.Module, targets: Sequence[str], family: str = "") -> list[str]:
    """The names of the ``nn.Linear`` modules of ``model`` matched by ``targets`` (regular expressions searched
    in module names); :class:`ConfigError` when none match, or when an OpenCLIP encoder (SD 2.x, SDXL bigG)
    would get some but not all of a layer's q/k/v/out projections (A1111 would then skip that layer)."""
    try:
        patterns = [re.compile(t) for t in targets]
    except re.error as error:
        raise ConfigError(f"low-rank target {error.pattern!r} is not a regular expression: {error}") from None
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and any(p.search(name) for p in patterns)]
    if not names:
        raise ConfigError(f"no linear layer of the encoder matches the low-rank targets {list(targets)}")
    if family in ("sd2", "sdxl"):
        layers: dict[str, set[str]] = {}
        for name in names:
            for projection in _ATTENTION:
                if name.endswith("." + projection):
                    layers.setdefault(name[: -len(projection) - 1], set()).add(projection)
        partial = sorted(layer for layer, found in layers.items() if len(found) != len(_ATTENTION))
        if partial:
            raise ConfigError(f"low-rank targets take only some of the attention projections of {partial[0]}: "
                              "AUTOMATIC1111 applies an OpenCLIP layer's q/k/v/out only together; target all four "
                              "or none")
    return names


def _lora_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    x = args[0]
    low = nn.functional.linear(nn.functional.linear(x.to(module.lora_down.dtype), module.lora_down), module.lora_up)
    # One fused add with the scale: no separate output-sized `low * scale` temporary per targeted layer.
    if output.dtype == low.dtype:
        return torch.add(output, low, alpha=module.lora_scale)
    # Frozen weights in bfloat16 / float16 (memory.py): add in float32, hand the next layer its own dtype.
    return torch.add(output.float(), low, alpha=module.lora_scale).to(output.dtype)


def attach_adapters(model: nn.Module, rank: int, alpha: float, targets: Sequence[str], family: str = ""
                    ) -> list[tuple[str, nn.Parameter]]:
    """Give each targeted ``nn.Linear`` of ``model`` (a training copy) trainable factors and the hook that uses
    them; return ``[(name, parameter)]`` of the factors (``<module>.lora_down`` / ``<module>.lora_up``)."""
    if rank < 1:
        raise ConfigError(f"rank must be at least 1 for low-rank training, not {rank}")
    modules = dict(model.named_modules())
    chosen: list[tuple[str, nn.Parameter]] = []
    for name in check_targets(model, targets, family):
        module = modules[name]
        weight = module.weight
        r = min(rank, *weight.shape)
        down = torch.empty(r, weight.shape[1], dtype=torch.float32, device=weight.device)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5))  # as nn.Linear (and PEFT's LoRA A); up = 0: starts as the original
        module.lora_down = nn.Parameter(down)
        module.lora_up = nn.Parameter(torch.zeros(weight.shape[0], r, dtype=torch.float32, device=weight.device))
        module.lora_scale = alpha / r
        module.register_forward_hook(_lora_hook)
        chosen += [(f"{name}.lora_down", module.lora_down), (f"{name}.lora_up", module.lora_up)]
    return chosen


METHODS = ("auto", "adapters", "compress")


def method_for(config, archs: Sequence[str]) -> str:
    """How a run of ``config`` on encoders of ``archs`` makes its low-rank file: ``"adapters"`` or ``"compress"``
    (``""`` for a full-weight run). ``"auto"``: adapters when an encoder is one of the large architectures whose
    full fine-tuning would not fit (T5, LLMs) or the frozen weights are asked for in half precision, else
    compress."""
    if config.rank <= 0:
        return ""
    if config.lowrank_method != "auto":
        return config.lowrank_method
    from .memory import LARGE_ARCHS

    if config.base_dtype not in ("auto", "float32") or any(arch in LARGE_ARCHS for arch in archs):
        return "adapters"
    return "compress"


def truncated_svd(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(up, down)`` with ``up @ down`` the best rank-``rank`` approximation of ``delta`` (truncated SVD), the
    singular values split evenly between the two."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    return (u[:, :r] * root).contiguous(), (root[:, None] * vh[:r]).contiguous()


def compress(deltas: Mapping[str, torch.Tensor], weights: Sequence[str], rank: int
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """``{HF weight name: (up, down, alpha)}``: the change of each of ``weights`` (the targeted linear layers'
    weights) cut to rank ``rank`` and stored as :func:`in_half_precision` factors with ``alpha`` = their rank; the
    other entries of ``deltas``, and weights that did not change, are left out."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for name in weights:
        delta = deltas.get(name)
        if delta is None or delta.dim() != 2 or not torch.count_nonzero(delta):
            continue
        up, down = in_half_precision(*truncated_svd(delta.detach().float().cpu(), rank))
        out[name] = (up, down, float(up.shape[1]))
    return out


def factors_from_params(params: Mapping[str, torch.Tensor], alpha: float
                        ) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """``{HF weight name: (up, down, alpha)}`` from trained ``<module>.lora_down`` / ``.lora_up`` tensors, with
    ``up`` scaled so the stored alpha equals the rank; factors of a layer that never moved (up all zero) are
    left out."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
    for name, up in params.items():
        if not name.endswith(".lora_up"):
            continue
        module = name[: -len(".lora_up")]
        down = params[module + ".lora_down"]
        r = up.shape[1]
        if not torch.count_nonzero(up):
            continue
        scaled = up.detach().float().cpu() * (alpha / r)  # the scale training used
        out[module + ".weight"] = (*in_half_precision(scaled, down.detach().float().cpu()), float(r))
    return out


_HALF_MAX = 2.0 ** 14  # well inside float16's range (65504) after balancing; larger factors stay float32


def in_half_precision(up: torch.Tensor, down: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``up`` and ``down`` rescaled by a power of two (their product unchanged, exactly) so their largest values
    match, then rounded to float16 values, held in float32: a file stores them at two bytes each, as LoRA files are
    shared, and training's figures, the file and every host then compute the same difference bit for bit. Returned
    unrounded when either would leave float16's range (:func:`half_exact` then keeps them in float32)."""
    up_max, down_max = float(up.abs().max()), float(down.abs().max())
    if up_max == 0.0 or down_max == 0.0:
        return up.contiguous(), down.contiguous()
    shift = round(0.5 * math.log2(down_max / up_max))  # up * 2**shift and down / 2**shift peak alike
    up2, down2 = torch.ldexp(up, torch.tensor(shift)), torch.ldexp(down, torch.tensor(-shift))
    if max(float(up2.abs().max()), float(down2.abs().max())) > _HALF_MAX:
        return up.contiguous(), down.contiguous()
    return up2.half().float().contiguous(), down2.half().float().contiguous()


def half_exact(tensor: torch.Tensor) -> bool:
    """True when every value of ``tensor`` is a float16 value, so storing it in float16 loses nothing."""
    return bool(torch.equal(tensor.to(torch.float16).float(), tensor.float()))


class Expansions(collections.abc.Mapping):
    """``{HF weight name: difference}`` of one encoder's factors, each expanded (:func:`expand`) when read and not
    kept: a 4B encoder's differences in float32 are 15 GB of host memory, its rank-8 factors 60 MB. Reading every
    value (saving, applying, evaluating) holds one expanded difference at a time."""

    def __init__(self, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]], source: str = ""):
        self.factors = factors
        self.source = source  # the file they were read from, for hosts' error messages (as DeltaDict's)

    def __getitem__(self, name: str) -> torch.Tensor:
        return expand(*self.factors[name])

    def __iter__(self):
        return iter(self.factors)

    def __len__(self) -> int:
        return len(self.factors)


def parameter_counts(factors: Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor, float]]]
                     ) -> tuple[int, int]:
    """``(stored, expanded)`` numbers of elements of a set of factors."""
    stored = expanded = 0
    for params in factors.values():
        for up, down, _ in params.values():
            stored += up.numel() + down.numel() + 1
            expanded += up.shape[0] * down.shape[1]
    return stored, expanded
