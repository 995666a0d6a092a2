"""Tiny diffusers pipelines of the T5 / LLM families, real classes, random weights.

``FluxPipeline`` and ``StableDiffusion3Pipeline`` are complete (tiny transformer and VAE: they draw); the others
(``ChromaPipeline``, ``Lumina2Pipeline``, ``ZImagePipeline``, ``Flux2KleinPipeline``, ``QwenImagePipeline``) carry their
text encoder and tokenizer only, which is all ``encode_prompt`` reads. The encoders are the transformers classes
those pipelines load (``CLIPTextModel(WithProjection)``, ``T5EncoderModel``, ``Gemma2Model``, ``Qwen3Model``,
``Qwen3ForCausalLM``, ``Qwen2_5_VLForConditionalGeneration``) with the tensors of :mod:`tiny_encoders` /
:mod:`tiny_models`; the tokenizers are :mod:`tiny_encoders`' (the Qwen one with a Qwen chat template).

``ENCODE[family](pipe, prompts)`` returns what each pipeline's ``encode_prompt`` hands to its transformer (the
sequence and, for Flux and SD 3, the pooled vector).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import torch

import tiny_encoders
import tiny_models

FAMILIES = ("flux", "sd3", "chroma", "lumina2", "z_image", "flux2_klein_4b", "qwen_image")

# Qwen's chat template, reduced to what the pipelines use: user turn, generation prompt, Klein's empty think block.
QWEN_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                      "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
                      "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


@functools.lru_cache(maxsize=None)
def tokenizer(kind: str) -> Any:
    if kind == "clip":
        from safetext_core.tokenizer import load_clip_tokenizer

        return load_clip_tokenizer()
    if kind == "clip_g":
        from safetext_core.tokenizer import load_clip_tokenizer

        return load_clip_tokenizer(pad_token="!")
    if kind == "t5":
        return tiny_encoders.t5_tokenizer()
    if kind == "gemma":
        return tiny_encoders.gemma_tokenizer()
    tok = tiny_encoders.qwen_tokenizer()
    tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


def _loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    assert not missing, missing[:3]  # every tensor drawn: a builder that leaves one at its init is a broken fixture
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model.eval().requires_grad_(False)


def t5(d_model: int = 32, seed: int = 3) -> torch.nn.Module:
    from transformers import T5Config, T5EncoderModel

    state = tiny_encoders.t5_state(d_model=d_model, seed=seed)
    config = T5Config(vocab_size=tiny_encoders.VOCAB, d_model=d_model, d_kv=d_model // 4, d_ff=64, num_layers=2,
                      num_heads=4, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0)
    return _loaded(T5EncoderModel(config), {**state, "encoder.embed_tokens.weight": state["shared.weight"]})


def clip(hidden: int = 32, layers: int = 2, act: str = "quick_gelu", projection: bool = False, seed: int = 4
         ) -> torch.nn.Module:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from safetext_core.models import to_model_names

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    model = cls(tiny_models.clip_config(hidden, layers, act, hidden if projection else None))
    state = to_model_names(model, tiny_models.random_clip_state(hidden, layers, act, projection, seed))
    return _loaded(model, {**state, **{k: v for k, v in model.state_dict().items() if k.endswith("position_ids")}})


def qwen3(layers: int = 3, hidden: int = 32, seed: int = 3, causal_lm: bool = False) -> torch.nn.Module:
    """Z-Image's ``Qwen3Model`` or (``causal_lm``) Klein's ``Qwen3ForCausalLM``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    heads, head_dim = (2, 16) if hidden >= 32 else (1, 16)
    state = tiny_encoders.qwen3_state(hidden=hidden, layers=layers, heads=heads, head_dim=head_dim,
                                      intermediate=2 * hidden, seed=seed)
    config = Qwen3Config(vocab_size=tiny_encoders.VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1, head_dim=head_dim,
                         bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=False)
    if causal_lm:
        torch.manual_seed(seed)
        head = 0.1 * torch.randn(tiny_encoders.VOCAB, hidden)
        return _loaded(Qwen3ForCausalLM(config), {**state, "lm_head.weight": head})
    return _loaded(Qwen3Model(config), {k[len("model."):]: v for k, v in state.items()})


def gemma2(seed: int = 3) -> torch.nn.Module:
    from transformers import Gemma2Config, Gemma2Model

    state = tiny_encoders.gemma2_state(seed=seed)
    config = Gemma2Config(vocab_size=tiny_encoders.VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                          attn_logit_softcapping=None, final_logit_softcapping=None)
    return _loaded(Gemma2Model(config), {k[len("model."):]: v for k, v in state.items()})


def qwen25vl(seed: int = 3) -> torch.nn.Module:
    """Qwen-Image's ``Qwen2_5_VLForConditionalGeneration``: the tiny text model of :func:`tiny_encoders.qwen25vl_state`
    under transformers 5's ``model.language_model``, a one-block vision tower and an output head beside it."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = tiny_encoders.qwen25vl_state(seed=seed, vision=False)
    config = Qwen2_5_VLConfig(
        text_config={"vocab_size": tiny_encoders.VOCAB, "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}, "bos_token_id": None,
                     "eos_token_id": None, "pad_token_id": None, "tie_word_embeddings": False},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 32,
                       "fullatt_block_indexes": [0]}, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    state = {k.replace("model.", "model.language_model.", 1): v for k, v in text.items()}
    state.update({k: 0.1 * torch.randn_like(v) for k, v in model.state_dict().items() if k not in state})
    return _loaded(model, state)


def encoders(family: str, seed: int = 3) -> dict[str, torch.nn.Module]:
    """The pipeline's text encoders by attribute (``text_encoder``, ``text_encoder_2``...)."""
    if family == "flux":
        return {"text_encoder": clip(seed=seed + 1), "text_encoder_2": t5(seed=seed)}
    if family == "sd3":  # T5 wider than CLIP-L + bigG (32 + 64): SD 3 pads the CLIP features to T5's width
        return {"text_encoder": clip(projection=True, seed=seed + 1),
                "text_encoder_2": clip(64, 3, "gelu", projection=True, seed=seed + 2),
                "text_encoder_3": t5(d_model=128, seed=seed)}
    if family == "chroma":
        return {"text_encoder": t5(seed=seed)}
    if family == "lumina2":
        return {"text_encoder": gemma2(seed=seed)}
    if family == "z_image":
        return {"text_encoder": qwen3(seed=seed)}
    if family == "flux2_klein_4b":  # Klein reads hidden state 27: 28 layers, 16 wide
        return {"text_encoder": qwen3(layers=28, hidden=16, seed=seed, causal_lm=True)}
    if family == "qwen_image":
        return {"text_encoder": qwen25vl(seed=seed)}
    raise ValueError(family)


def pipeline(family: str, text_encoders: dict[str, torch.nn.Module] | None = None) -> Any:
    """A tiny pipeline of ``family``'s diffusers class; ``text_encoders`` replace :func:`encoders`' (by attribute)."""
    import diffusers

    modules = {**encoders(family), **(text_encoders or {})}
    torch.manual_seed(0)
    if family == "flux":
        transformer = diffusers.FluxTransformer2DModel(
            patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        pipe = diffusers.FluxPipeline(scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=_vae(1),
                                      tokenizer=tokenizer("clip"), tokenizer_2=tokenizer("t5"), transformer=transformer,
                                      **modules)
    elif family == "sd3":
        transformer = diffusers.SD3Transformer2DModel(
            sample_size=8, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=4,
            caption_projection_dim=32, joint_attention_dim=128, pooled_projection_dim=32 + 64, out_channels=4)
        pipe = diffusers.StableDiffusion3Pipeline(
            transformer=transformer, scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=_vae(4),
            tokenizer=tokenizer("clip"), tokenizer_2=tokenizer("clip_g"), tokenizer_3=tokenizer("t5"), **modules)
    else:  # encode_prompt reads the encoder and tokenizer only
        cls = {"chroma": "ChromaPipeline", "lumina2": "Lumina2Pipeline", "z_image": "ZImagePipeline",
               "flux2_klein_4b": "Flux2KleinPipeline", "qwen_image": "QwenImagePipeline"}[family]
        tok = tokenizer({"chroma": "t5", "lumina2": "gemma"}.get(family, "qwen"))
        pipe = getattr(diffusers, cls)(scheduler=None, vae=None, transformer=None, tokenizer=tok, **modules)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _vae(latent_channels: int) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def _tensors(*values: Any) -> tuple[torch.Tensor, ...]:
    out: list[torch.Tensor] = []
    for value in values:
        out.extend(value if isinstance(value, list) else [value])  # Z-Image: one tensor per prompt
    return tuple(out)


ENCODE: dict[str, Callable[[Any, list[str]], tuple[torch.Tensor, ...]]] = {
    "flux": lambda p, x: _tensors(*p.encode_prompt(x, prompt_2=None, max_sequence_length=64)[:2]),
    "sd3": lambda p, x: (lambda r: _tensors(r[0], r[2]))(
        p.encode_prompt(x, None, None, do_classifier_free_guidance=False, max_sequence_length=64)),
    "chroma": lambda p, x: _tensors(p.encode_prompt(x, do_classifier_free_guidance=False, max_sequence_length=64)[0]),
    "lumina2": lambda p, x: _tensors(p.encode_prompt(x, do_classifier_free_guidance=False)[0]),
    "z_image": lambda p, x: _tensors(p.encode_prompt(x, device="cpu", do_classifier_free_guidance=False,
                                                     max_sequence_length=64)[0]),
    "flux2_klein_4b": lambda p, x: _tensors(p.encode_prompt(x, device="cpu")[0]),
    "qwen_image": lambda p, x: _tensors(p.encode_prompt(x, device="cpu")[0]),
}


def encode(family: str, pipe: Any, prompts: list[str]) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return ENCODE[family](pipe, list(prompts))
