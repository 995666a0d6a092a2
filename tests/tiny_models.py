"""Tiny models with real architectures and random weights, for tests that must run anywhere offline.

CLIP text encoders keep the real 49,408-token vocabulary (so the real tokenizer works) but are only
32-64 wide. Single-file checkpoints use the real LDM/SGM key layouts of SD 1.x, SD 2.x and SDXL.
Biases are drawn too: all-zero biases can make an encoder's output mean exactly zero.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig

from safetext_core.models import ClipTextEncoder

VOCAB = 49408


def clip_config(hidden: int = 32, layers: int = 2, act: str = "quick_gelu", projection: int | None = None) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                          num_attention_heads=max(1, hidden // 16), max_position_embeddings=77, hidden_act=act,
                          projection_dim=projection or hidden, bos_token_id=0, eos_token_id=2, pad_token_id=1)


def random_clip_state(hidden: int = 32, layers: int = 2, act: str = "quick_gelu", projection: bool = False,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """A canonical (``text_model.*``) CLIP text state dict with every weight and bias drawn."""
    torch.manual_seed(seed)
    model = ClipTextEncoder(clip_config(hidden, layers, act), with_projection=projection)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.08 * torch.randn_like(param))
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("position_ids")}


def to_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Written independently of the core's converter: OpenCLIP's own names, fused attention."""
    out: dict[str, torch.Tensor] = {}
    layers = sorted({int(k.split(".")[3]) for k in state if k.startswith("text_model.encoder.layers.")})
    out["token_embedding.weight"] = state["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = state["text_model.embeddings.position_embedding.weight"]
    for i in layers:
        p = f"text_model.encoder.layers.{i}."
        r = f"transformer.resblocks.{i}."
        out[r + "attn.in_proj_weight"] = torch.cat([state[p + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        out[r + "attn.in_proj_bias"] = torch.cat([state[p + f"self_attn.{x}_proj.bias"] for x in "qkv"])
        out[r + "attn.out_proj.weight"] = state[p + "self_attn.out_proj.weight"]
        out[r + "attn.out_proj.bias"] = state[p + "self_attn.out_proj.bias"]
        for a, b in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2")):
            out[r + f"{a}.weight"], out[r + f"{a}.bias"] = state[p + f"{b}.weight"], state[p + f"{b}.bias"]
        for a, b in (("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
            out[r + f"{a}.weight"], out[r + f"{a}.bias"] = state[p + f"{b}.weight"], state[p + f"{b}.bias"]
    out["ln_final.weight"] = state["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = state["text_model.final_layer_norm.bias"]
    if "text_projection.weight" in state:
        out["text_projection"] = state["text_projection.weight"].t().contiguous()
    out["logit_scale"] = torch.tensor(4.6)
    return out


def write_single_file(path: Path, family: str, half: bool = False, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Write a single-file checkpoint with a stand-in UNet tensor; return the canonical encoder states."""
    tensors: dict[str, torch.Tensor] = {"model.diffusion_model.input_blocks.0.0.weight": torch.randn(8, 4, 3, 3),
                                        "first_stage_model.decoder.conv_in.weight": torch.randn(8, 4, 3, 3)}
    states: dict[str, dict[str, torch.Tensor]] = {}
    if family == "sd1":
        states["clip_l"] = random_clip_state(seed=seed)
        tensors.update({"cond_stage_model.transformer." + k: v for k, v in states["clip_l"].items()})
    elif family == "sd2":
        states["clip_h"] = random_clip_state(hidden=64, layers=3, act="gelu", projection=True, seed=seed)
        tensors.update({"cond_stage_model.model." + k: v for k, v in to_openclip(states["clip_h"]).items()})
        states["clip_h"].pop("text_projection.weight")  # SD 2.x consumes hidden states only
    elif family == "sdxl":
        states["clip_l"] = random_clip_state(seed=seed)
        states["clip_g"] = random_clip_state(hidden=64, layers=3, act="gelu", projection=True, seed=seed + 1)
        tensors.update({"conditioner.embedders.0.transformer." + k: v for k, v in states["clip_l"].items()})
        tensors.update({"conditioner.embedders.1.model." + k: v for k, v in to_openclip(states["clip_g"]).items()})
    else:
        raise ValueError(family)
    if half:
        tensors = {k: v.half() for k, v in tensors.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return states


def tiny_sd_pipeline(text_state: dict[str, torch.Tensor] | None = None, family: str = "sd1"):
    """A real diffusers StableDiffusionPipeline, tiny, with a transformers CLIP text encoder.

    ``family="sd2"``: the text encoder is the 64-wide GELU stand-in for OpenCLIP ViT-H that
    :func:`write_single_file` writes for SD 2.x (pass its ``clip_h`` state), the UNet attends to 64 wide."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from safetext_core.models import load_canonical_state
    from safetext_core.tokenizer import load_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                attention_head_dim=4, norm_num_groups=16, cross_attention_dim=64 if family == "sd2" else 32)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=16)
    text = CLIPTextModel(clip_config(64, 3, "gelu") if family == "sd2" else clip_config())
    load_canonical_state(text, text_state or random_clip_state())
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text.eval(), tokenizer=load_clip_tokenizer(), unet=unet,
                                   scheduler=DDIMScheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_sdxl_pipeline(clip_l: dict[str, torch.Tensor], clip_g: dict[str, torch.Tensor]):
    """A real diffusers StableDiffusionXLPipeline, tiny (CLIP-L 32 wide + bigG stand-in 64 wide)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from safetext_core.models import load_canonical_state
    from safetext_core.tokenizer import load_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
                                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                                transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 64,
                                cross_attention_dim=32 + 64, norm_num_groups=16)
    vae = AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=16)
    te1 = load_canonical_state(CLIPTextModel(clip_config()), clip_l).eval()
    te2 = load_canonical_state(CLIPTextModelWithProjection(clip_config(64, 3, "gelu", 64)), clip_g).eval()
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=load_clip_tokenizer(),
                                     tokenizer_2=load_clip_tokenizer(pad_token="!"), unet=unet,
                                     scheduler=EulerDiscreteScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def resume_checkpoint_of_an_earlier_version(encoders, prompt_sets, config, resume, *missing: str) -> None:
    """Run ``config`` until two steps are done and cancelled (a resume checkpoint at ``resume``), then rewrite the
    checkpoint's settings without ``missing``, as a version before those settings existed wrote them."""
    import json

    import pytest
    from safetensors import safe_open
    from safetensors.torch import save_file

    from safetext_core.errors import AlignmentCancelled
    from safetext_core.loop import align

    steps = []
    with pytest.raises(AlignmentCancelled):
        align(encoders, prompt_sets, config, resume_path=resume, should_cancel=lambda: len(steps) >= 2,
              progress=lambda e: steps.append(e) if e.phase == "train" else None)
    with safe_open(str(resume), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    settings = {k: v for k, v in json.loads(meta["config"]).items() if k not in missing}
    save_file(tensors, str(resume), {**meta, "config": json.dumps(settings)})
