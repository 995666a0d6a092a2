"""Tiny single-file checkpoints that a real ComfyUI loads, for the integration tests.

ComfyUI detects a checkpoint's family from tensor *names and shapes* (``comfy/model_detection.py``) and then
builds the text encoders from fixed configs (CLIP-L: ``sd1_clip_config.json``; OpenCLIP bigG:
``clip_config_bigg.json``). So:

* the **UNet** can be tiny, as long as detection still matches the family: SD 1.5 needs ``model_channels``
  320, ``context_dim`` 768 and conv ``proj_in``; SDXL needs ``model_channels`` 320, linear ``proj_in``,
  ``context_dim`` 2048, ``adm_in_channels`` 2816 and input transformer depths exactly ``[0, 0, 2, 2, 10, 10]``.
  Everything else (channel multipliers, output-side depths, the middle block) is ours to shrink;
* the **VAE** is built by ComfyUI from a fixed config (``ch`` 128, ``ch_mult`` [1, 2, 4, 4]), so it is full size;
* the **text encoders** are full size (CLIP-L 123 M parameters, bigG 695 M): a missing tensor would be left
  uninitialised by ComfyUI (its layers skip weight init).

Key names are the original LDM / SGM ones: ``model.diffusion_model.*``, ``first_stage_model.*``,
``cond_stage_model.transformer.text_model.*`` (SD 1.x) and ``conditioner.embedders.0.transformer.text_model.*``
plus ``conditioner.embedders.1.model.*`` in open_clip naming (fused ``in_proj_weight``, ``ln_1``, ``mlp.c_fc``,
``text_projection`` as a ``[width, proj]`` matrix) for SDXL.

Weights are random but well scaled (``N(0, 1/fan_in)`` matrices, norm scales near 1, biases drawn too, never all
zero) so that images are finite and depend on the prompt. Generation is seeded and deterministic; files are
written in fp16 to a cache folder outside the repository (``SAFETEXT_COMFY_CACHE`` or the system temp dir) and
reused across runs. Nothing here imports ComfyUI.

    python tests/integration/comfy_checkpoints.py --out DIR [--sdxl]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

CHECKPOINT_VERSION = 1  # bump when what the builder writes changes

Shape = Tuple[int, ...]

# ---------------------------------------------------------------------------------------------------------------
# UNet (ldm.modules.diffusionmodules.openaimodel.UNetModel names)


def _resblock(p: str, cin: int, cout: int, emb: int) -> Iterator[Tuple[str, Shape]]:
    yield f"{p}.in_layers.0.weight", (cin,)
    yield f"{p}.in_layers.0.bias", (cin,)
    yield f"{p}.in_layers.2.weight", (cout, cin, 3, 3)
    yield f"{p}.in_layers.2.bias", (cout,)
    yield f"{p}.emb_layers.1.weight", (cout, emb)
    yield f"{p}.emb_layers.1.bias", (cout,)
    yield f"{p}.out_layers.0.weight", (cout,)
    yield f"{p}.out_layers.0.bias", (cout,)
    yield f"{p}.out_layers.3.weight", (cout, cout, 3, 3)
    yield f"{p}.out_layers.3.bias", (cout,)
    if cin != cout:
        yield f"{p}.skip_connection.weight", (cout, cin, 1, 1)
        yield f"{p}.skip_connection.bias", (cout,)


def _spatial_transformer(p: str, ch: int, depth: int, context: int, linear: bool) -> Iterator[Tuple[str, Shape]]:
    proj = (ch, ch) if linear else (ch, ch, 1, 1)
    yield f"{p}.norm.weight", (ch,)
    yield f"{p}.norm.bias", (ch,)
    yield f"{p}.proj_in.weight", proj
    yield f"{p}.proj_in.bias", (ch,)
    for d in range(depth):
        b = f"{p}.transformer_blocks.{d}"
        for attn, kv in (("attn1", ch), ("attn2", context)):
            yield f"{b}.{attn}.to_q.weight", (ch, ch)
            yield f"{b}.{attn}.to_k.weight", (ch, kv)
            yield f"{b}.{attn}.to_v.weight", (ch, kv)
            yield f"{b}.{attn}.to_out.0.weight", (ch, ch)
            yield f"{b}.{attn}.to_out.0.bias", (ch,)
        yield f"{b}.ff.net.0.proj.weight", (ch * 8, ch)  # GEGLU: 2 x (4 x ch)
        yield f"{b}.ff.net.0.proj.bias", (ch * 8,)
        yield f"{b}.ff.net.2.weight", (ch, ch * 4)
        yield f"{b}.ff.net.2.bias", (ch,)
        for n in ("norm1", "norm2", "norm3"):
            yield f"{b}.{n}.weight", (ch,)
            yield f"{b}.{n}.bias", (ch,)
    yield f"{p}.proj_out.weight", proj
    yield f"{p}.proj_out.bias", (ch,)


def unet_shapes(model_channels: int, channel_mult: List[int], num_res_blocks: int, depth_in: List[int],
                depth_out: List[int], depth_middle: int, context_dim: int, linear: bool,
                adm_in_channels: int | None = None, prefix: str = "model.diffusion_model.") -> Dict[str, Shape]:
    """Tensor names and shapes of an LDM UNet; ``depth_in`` has one entry per input res block, ``depth_out``
    one per output block (``num_res_blocks + 1`` per level)."""
    mc, emb = model_channels, model_channels * 4
    out: Dict[str, Shape] = {}

    def add(items):
        for k, v in items:
            out[prefix + k] = v

    add([("time_embed.0.weight", (emb, mc)), ("time_embed.0.bias", (emb,)),
         ("time_embed.2.weight", (emb, emb)), ("time_embed.2.bias", (emb,))])
    if adm_in_channels:
        add([("label_emb.0.0.weight", (emb, adm_in_channels)), ("label_emb.0.0.bias", (emb,)),
             ("label_emb.0.2.weight", (emb, emb)), ("label_emb.0.2.bias", (emb,))])
    add([("input_blocks.0.0.weight", (mc, 4, 3, 3)), ("input_blocks.0.0.bias", (mc,))])
    chans = [mc]
    ch, block, k = mc, 1, 0
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            add(_resblock(f"input_blocks.{block}.0", ch, mc * mult, emb))
            ch = mc * mult
            if depth_in[k]:
                add(_spatial_transformer(f"input_blocks.{block}.1", ch, depth_in[k], context_dim, linear))
            k += 1
            chans.append(ch)
            block += 1
        if level != len(channel_mult) - 1:
            add([(f"input_blocks.{block}.0.op.weight", (ch, ch, 3, 3)), (f"input_blocks.{block}.0.op.bias", (ch,))])
            chans.append(ch)
            block += 1
    add(_resblock("middle_block.0", ch, ch, emb))
    if depth_middle > 0:
        add(_spatial_transformer("middle_block.1", ch, depth_middle, context_dim, linear))
        add(_resblock("middle_block.2", ch, ch, emb))
    # depth_middle 0: ComfyUI's "transformer_depth_middle = -1", a middle block of one res block
    block, k = 0, 0
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            skip = chans.pop()
            add(_resblock(f"output_blocks.{block}.0", ch + skip, mc * mult, emb))
            ch = mc * mult
            sub = 1
            if depth_out[k]:
                add(_spatial_transformer(f"output_blocks.{block}.1", ch, depth_out[k], context_dim, linear))
                sub = 2
            k += 1
            if level and i == num_res_blocks:
                add([(f"output_blocks.{block}.{sub}.conv.weight", (ch, ch, 3, 3)),
                     (f"output_blocks.{block}.{sub}.conv.bias", (ch,))])
            block += 1
    add([("out.0.weight", (mc,)), ("out.0.bias", (mc,)), ("out.2.weight", (4, mc, 3, 3)), ("out.2.bias", (4,))])
    return out


# ---------------------------------------------------------------------------------------------------------------
# VAE (ldm.models.autoencoder.AutoencoderKL names; ComfyUI's fixed SD config)


def _vae_res(p: str, cin: int, cout: int) -> Iterator[Tuple[str, Shape]]:
    yield f"{p}.norm1.weight", (cin,)
    yield f"{p}.norm1.bias", (cin,)
    yield f"{p}.conv1.weight", (cout, cin, 3, 3)
    yield f"{p}.conv1.bias", (cout,)
    yield f"{p}.norm2.weight", (cout,)
    yield f"{p}.norm2.bias", (cout,)
    yield f"{p}.conv2.weight", (cout, cout, 3, 3)
    yield f"{p}.conv2.bias", (cout,)
    if cin != cout:
        yield f"{p}.nin_shortcut.weight", (cout, cin, 1, 1)
        yield f"{p}.nin_shortcut.bias", (cout,)


def _vae_attn(p: str, c: int) -> Iterator[Tuple[str, Shape]]:
    yield f"{p}.norm.weight", (c,)
    yield f"{p}.norm.bias", (c,)
    for n in ("q", "k", "v", "proj_out"):
        yield f"{p}.{n}.weight", (c, c, 1, 1)
        yield f"{p}.{n}.bias", (c,)


def vae_shapes(ch: int = 128, ch_mult=(1, 2, 4, 4), num_res_blocks: int = 2, z: int = 4,
               prefix: str = "first_stage_model.") -> Dict[str, Shape]:
    out: Dict[str, Shape] = {}

    def add(items):
        for k, v in items:
            out[prefix + k] = v

    add([("encoder.conv_in.weight", (ch, 3, 3, 3)), ("encoder.conv_in.bias", (ch,))])
    cin = ch
    for i, m in enumerate(ch_mult):
        for j in range(num_res_blocks):
            add(_vae_res(f"encoder.down.{i}.block.{j}", cin, ch * m))
            cin = ch * m
        if i != len(ch_mult) - 1:
            add([(f"encoder.down.{i}.downsample.conv.weight", (cin, cin, 3, 3)),
                 (f"encoder.down.{i}.downsample.conv.bias", (cin,))])
    add(_vae_res("encoder.mid.block_1", cin, cin))
    add(_vae_attn("encoder.mid.attn_1", cin))
    add(_vae_res("encoder.mid.block_2", cin, cin))
    add([("encoder.norm_out.weight", (cin,)), ("encoder.norm_out.bias", (cin,)),
         ("encoder.conv_out.weight", (2 * z, cin, 3, 3)), ("encoder.conv_out.bias", (2 * z,)),
         ("quant_conv.weight", (2 * z, 2 * z, 1, 1)), ("quant_conv.bias", (2 * z,)),
         ("post_quant_conv.weight", (z, z, 1, 1)), ("post_quant_conv.bias", (z,))])
    top = ch * ch_mult[-1]
    add([("decoder.conv_in.weight", (top, z, 3, 3)), ("decoder.conv_in.bias", (top,))])
    add(_vae_res("decoder.mid.block_1", top, top))
    add(_vae_attn("decoder.mid.attn_1", top))
    add(_vae_res("decoder.mid.block_2", top, top))
    cin = top
    for i in reversed(range(len(ch_mult))):
        for j in range(num_res_blocks + 1):
            add(_vae_res(f"decoder.up.{i}.block.{j}", cin, ch * ch_mult[i]))
            cin = ch * ch_mult[i]
        if i != 0:
            add([(f"decoder.up.{i}.upsample.conv.weight", (cin, cin, 3, 3)),
                 (f"decoder.up.{i}.upsample.conv.bias", (cin,))])
    add([("decoder.norm_out.weight", (cin,)), ("decoder.norm_out.bias", (cin,)),
         ("decoder.conv_out.weight", (3, cin, 3, 3)), ("decoder.conv_out.bias", (3,))])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Text encoders


def clip_hf_shapes(prefix: str, width: int = 768, layers: int = 12, mlp: int = 3072, vocab: int = 49408,
                   positions: int = 77, projection: int | None = None) -> Dict[str, Shape]:
    """transformers ``CLIPTextModel`` names under ``prefix`` (which ends in ``text_model.``)."""
    out: Dict[str, Shape] = {
        f"{prefix}embeddings.token_embedding.weight": (vocab, width),
        f"{prefix}embeddings.position_embedding.weight": (positions, width),
        f"{prefix}final_layer_norm.weight": (width,),
        f"{prefix}final_layer_norm.bias": (width,),
    }
    for i in range(layers):
        b = f"{prefix}encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out[f"{b}self_attn.{n}.weight"] = (width, width)
            out[f"{b}self_attn.{n}.bias"] = (width,)
        for n in ("layer_norm1", "layer_norm2"):
            out[f"{b}{n}.weight"] = (width,)
            out[f"{b}{n}.bias"] = (width,)
        out[f"{b}mlp.fc1.weight"] = (mlp, width)
        out[f"{b}mlp.fc1.bias"] = (mlp,)
        out[f"{b}mlp.fc2.weight"] = (width, mlp)
        out[f"{b}mlp.fc2.bias"] = (width,)
    return out


def open_clip_shapes(prefix: str, width: int = 1280, layers: int = 32, mlp: int = 5120, vocab: int = 49408,
                     positions: int = 77, projection: int = 1280) -> Dict[str, Shape]:
    """open_clip text-tower names under ``prefix`` (SGM's ``conditioner.embedders.1.model.``)."""
    out: Dict[str, Shape] = {
        f"{prefix}token_embedding.weight": (vocab, width),
        f"{prefix}positional_embedding": (positions, width),
        f"{prefix}ln_final.weight": (width,),
        f"{prefix}ln_final.bias": (width,),
        f"{prefix}text_projection": (width, projection),
    }
    for i in range(layers):
        b = f"{prefix}transformer.resblocks.{i}."
        out[f"{b}attn.in_proj_weight"] = (3 * width, width)
        out[f"{b}attn.in_proj_bias"] = (3 * width,)
        out[f"{b}attn.out_proj.weight"] = (width, width)
        out[f"{b}attn.out_proj.bias"] = (width,)
        for n in ("ln_1", "ln_2"):
            out[f"{b}{n}.weight"] = (width,)
            out[f"{b}{n}.bias"] = (width,)
        out[f"{b}mlp.c_fc.weight"] = (mlp, width)
        out[f"{b}mlp.c_fc.bias"] = (mlp,)
        out[f"{b}mlp.c_proj.weight"] = (width, mlp)
        out[f"{b}mlp.c_proj.bias"] = (width,)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Layouts


def sd15_shapes() -> Dict[str, Shape]:
    shapes = unet_shapes(320, [1], 1, depth_in=[1], depth_out=[1, 1], depth_middle=1, context_dim=768, linear=False)
    shapes.update(vae_shapes())
    shapes.update(clip_hf_shapes("cond_stage_model.transformer.text_model."))
    return shapes


def sdxl_shapes() -> Dict[str, Shape]:
    # Input depths are what ComfyUI's SDXL profile requires; the output side and middle block are shrunk.
    shapes = unet_shapes(320, [1, 1, 1], 2, depth_in=[0, 0, 2, 2, 10, 10], depth_out=[0, 0, 0, 0, 0, 1, 0, 0, 1],
                         depth_middle=0, context_dim=2048, linear=True, adm_in_channels=2816)
    shapes.update(vae_shapes())
    shapes.update(clip_hf_shapes("conditioner.embedders.0.transformer.text_model."))
    shapes.update(open_clip_shapes("conditioner.embedders.1.model."))
    return shapes


LAYOUTS = {"sd15": sd15_shapes, "sdxl": sdxl_shapes}


def _draw(name: str, shape: Shape, gen):
    import torch

    if name.endswith("token_embedding.weight"):
        return torch.randn(shape, generator=gen) * 0.02
    if name.endswith(("position_embedding.weight", "positional_embedding")):
        return torch.randn(shape, generator=gen) * 0.01
    if len(shape) >= 2:
        fan_in = 1
        for n in shape[1:]:
            fan_in *= n
        if name.endswith("text_projection"):  # open_clip stores it as [width, proj]: x @ P
            fan_in = shape[0]
        return torch.randn(shape, generator=gen) * (1.0 / fan_in) ** 0.5
    if name.endswith("weight"):  # norm scales
        return 1.0 + 0.02 * torch.randn(shape, generator=gen)
    return 0.02 * torch.randn(shape, generator=gen)  # biases: drawn, never all zero


def random_state_dict(layout: str, seed: int = 0) -> Dict[str, "object"]:
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in LAYOUTS[layout]().items():
        state[name] = _draw(name, shape, gen).to(torch.float16).contiguous()
    if layout == "sd15":
        state["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    return state


def default_cache_dir() -> Path:
    return Path(os.environ.get("SAFETEXT_COMFY_CACHE", Path(tempfile.gettempdir()) / "safetext-comfy-fixtures"))


def build_checkpoint(layout: str, out_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Write (or reuse) ``safetext-test-<layout>-v<N>-seed<S>.safetensors`` in ``out_dir``; return its path."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir) if out_dir else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"safetext-test-{layout}-v{CHECKPOINT_VERSION}-seed{seed}.safetensors"
    if target.is_file():
        return target
    t0 = time.time()
    state = random_state_dict(layout, seed)
    digest = hashlib.sha256(json.dumps(sorted((k, list(v.shape)) for k, v in state.items())).encode()).hexdigest()
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    save_file(state, str(partial), metadata={"safetext_test_checkpoint": f"{layout}-random", "seed": str(seed),
                                             "keys_sha256": digest})
    os.replace(partial, target)
    n = sum(v.numel() for v in state.values())
    print(f"wrote {target} ({n / 1e6:.0f} M parameters, {target.stat().st_size / 2**20:.0f} MiB, "
          f"{time.time() - t0:.1f} s)")
    return target


def build_lora_sd15(out_dir: str | os.PathLike | None = None, seed: int = 1, rank: int = 4,
                    layers=(0, 5, 11)) -> Path:
    """A small text-encoder LoRA in kohya's ``lora_te_`` naming (what most SD 1.5 LoRAs use)."""
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir) if out_dir else default_cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"safetext-test-lora-sd15-v{CHECKPOINT_VERSION}-seed{seed}.safetensors"
    if target.is_file():
        return target
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for layer in layers:
        for module, (fout, fin) in (("self_attn_q_proj", (768, 768)), ("self_attn_v_proj", (768, 768)),
                                    ("mlp_fc1", (3072, 768))):
            key = f"lora_te_text_model_encoder_layers_{layer}_{module}"
            state[f"{key}.lora_down.weight"] = (torch.randn(rank, fin, generator=gen) / fin ** 0.5).half()
            state[f"{key}.lora_up.weight"] = (torch.randn(fout, rank, generator=gen) / rank ** 0.5 * 0.5).half()
            state[f"{key}.alpha"] = torch.tensor(float(rank))
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    save_file(state, str(partial))
    os.replace(partial, target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: %s)" % default_cache_dir())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), action="append")
    args = parser.parse_args(argv)
    for layout in args.layout or ["sd15", "sdxl"]:
        build_checkpoint(layout, args.out, args.seed)
    build_lora_sd15(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
