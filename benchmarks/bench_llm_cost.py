"""llm_cost: one alignment step of T5-XXL and Qwen3-4B against one LoRA training step of the diffusion model they feed.

Issue 13 asks for the cost of aligning these encoders as a ratio to the peer cost: a LoRA training step of the
matching diffusion model (Flux.1's 12B transformer for T5-XXL, Z-Image's 6B transformer for Qwen3-4B). Neither fits
this machine's CPU at full size, and no GPU was lent, so this counts floating-point operations instead of timing:
every model is built at its real size on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic) and one
step runs under ``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix products and attention of
every forward and backward pass, recomputations included. On a GPU both sides are dominated by the same bf16 matrix
products, so the FLOP ratio is what the time ratio approaches; it is not a time measurement.

* **Alignment step** (the engine's own code on the meta model): the copy made by ``loop.trainable_copy`` as a GPU run
  makes it (rank 8, frozen weights in bfloat16, checkpointed blocks: ``memory.memory_plan``'s "auto" on a GPU),
  then what one default step does for each half (safe: 16 prompts + 8 pair sides + 8 word salads; unsafe: 16 + 8
  pair sides): the originals recomputed with the adapters off (no gradients), the trainee's pass with gradients,
  the backward pass. Positions: Flux's T5 consumes 256 (the host pads to it); Z-Image's Qwen3 the template and the
  prompt's tokens, 48 taken here (the memory benchmark tokenized 47 a prompt on average with the tests' small
  tokenizer; a real Qwen vocabulary gives fewer).
* **LoRA step**: the diffusers transformer at its released size (Flux.1 [dev]: 19 double and 38 single blocks,
  3,072 wide; Z-Image: 30 + 2 + 2 blocks, 3,840 wide), frozen bf16 weights, one 1024 x 1024 picture (4,096 latent
  tokens) with its caption (Flux: 512 T5 positions; Z-Image: 48), gradient checkpointing on (what 24 GB LoRA
  trainers use), the latents requiring gradients so that the backward pass runs through every block as it does for
  adapters in every block (the adapters' own products, rank 8-32, are left out: well under 1% of a step).

* **Flux.2 Klein 9B** (Qwen3-8B, 512 positions): its host reads hidden states 9, 18 and 27 of 36 layers, so the
  training copy leaves the nine above out (``models.trim_unread_layers``); the step is counted both ways, no peer.

    .venv/bin/python -m benchmarks.bench_llm_cost

It writes ``benchmarks/results/llm_cost.json`` and ``llm_cost.md``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAFE, UNSAFE = 16 + 8 + 8, 16 + 8  # prompts in each half of a default step (AlignConfig: batch 16, pairs, salads)


def _count(run) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return counter.get_total_flops()


def _text_encoder(family: str):
    """The family's big encoder at its released size, on ``meta``, as ``load_encoders`` would build it."""
    from transformers import Qwen3Config, Qwen3Model, T5Config, T5EncoderModel

    from safetext_core.models import PrefixedEncoder

    with torch.device("meta"):
        if family == "flux":
            return T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                           num_heads=64, feed_forward_proj="gated-gelu", dropout_rate=0.0))
        if family == "flux2_klein_9b":  # Qwen3-8B
            return PrefixedEncoder(Qwen3Model(Qwen3Config(vocab_size=151936, hidden_size=4096, intermediate_size=12288,
                                                          num_hidden_layers=36, num_attention_heads=32,
                                                          num_key_value_heads=8, head_dim=128, use_cache=False)))
        return PrefixedEncoder(Qwen3Model(Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728,
                                                      num_hidden_layers=36, num_attention_heads=32,
                                                      num_key_value_heads=8, head_dim=128, use_cache=False)))


def alignment_step_flops(family: str, encoder: str, positions: int, trim: bool = True) -> tuple[int, int]:
    """FLOPs of one default alignment step of ``encoder`` (a GPU run's memory plan), and the encoder's parameters.
    ``trim=False``: every layer runs, as before the training copy left out the layers no host reads (Klein)."""
    from dataclasses import replace

    from safetext_core.encoding import consumed_outputs
    from safetext_core.families import get_family
    from safetext_core.loop import AlignConfig, _AdaptersOff, trainable_copy
    from safetext_core.memory import memory_plan

    import transformers.masking_utils as masking

    # Without a mask transformers looks for packed sequences by reading position values, which meta tensors do not
    # have; a batch of separate prompts is never packed.
    masking.find_packed_sequence_indices = lambda position_ids: None
    spec = get_family(family).encoder(encoder)
    model = _text_encoder(family)
    params = sum(p.numel() for p in model.parameters())
    config = replace(AlignConfig(), rank=8)
    dtype, checkpointing = memory_plan(config, spec.arch, "cuda")
    trainee, _ = trainable_copy(model, config, family, spec.adapter_targets, dtype, checkpointing,
                                spec=spec if trim else None)

    def step() -> None:
        for count in (SAFE, UNSAFE):
            with torch.device("meta"):
                ids = torch.zeros(count, positions, dtype=torch.long)
                mask = torch.ones(count, positions, dtype=torch.long)
            batch = {"input_ids": ids, "mask": mask}
            if spec.arch == "t5":  # Qwen's mask builder reads values (impossible on meta); all ones = no mask
                batch["attention_mask"] = mask
            with torch.no_grad(), _AdaptersOff(trainee):  # the originals, recomputed (memory.LARGE_ARCHS)
                consumed_outputs(trainee, batch, spec)
            outputs, _ = consumed_outputs(trainee, batch, spec)
            sum(o.float().square().mean() for o in outputs).backward()

    return _count(step), params


def lora_step_flops(family: str, caption: int) -> tuple[int, int]:
    """FLOPs of one LoRA training step of ``family``'s diffusion transformer on one 1024 x 1024 picture."""
    from diffusers import FluxTransformer2DModel, ZImageTransformer2DModel

    with torch.device("meta"):
        if family == "flux":
            model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                           attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                                           pooled_projection_dim=768, guidance_embeds=True)
        else:
            model = ZImageTransformer2DModel()
    model = model.to(torch.bfloat16).requires_grad_(False)
    model.enable_gradient_checkpointing()
    model.train()
    params = sum(p.numel() for p in model.parameters())

    def step() -> None:
        with torch.device("meta"):
            if family == "flux":
                latents = torch.randn(1, 4096, 64, dtype=torch.bfloat16, requires_grad=True)
                out = model(hidden_states=latents, encoder_hidden_states=torch.randn(1, caption, 4096, dtype=torch.bfloat16),
                            pooled_projections=torch.randn(1, 768, dtype=torch.bfloat16), timestep=torch.ones(1),
                            img_ids=torch.zeros(4096, 3), txt_ids=torch.zeros(caption, 3), guidance=torch.ones(1)).sample
                out.float().square().mean().backward()
            else:
                latents = torch.randn(16, 1, 128, 128, dtype=torch.bfloat16, requires_grad=True)
                out = model([latents], torch.ones(1), [torch.randn(caption, 2560, dtype=torch.bfloat16)]).sample
                sum(o.float().square().mean() for o in out).backward()

    return _count(step), params


def main() -> None:
    started = time.time()
    cases = [("flux", "t5xxl", 256, "Flux.1 [dev] transformer", 512),
             ("z_image", "qwen3_4b", 48, "Z-Image transformer", 48)]
    rows = []
    for family, encoder, positions, peer, caption in cases:
        align_flops, encoder_params = alignment_step_flops(family, encoder, positions)
        lora_flops, peer_params = lora_step_flops(family, caption)
        rows.append({"family": family, "encoder": encoder, "encoder_parameters": encoder_params,
                     "positions": positions, "alignment_step_flops": align_flops, "peer": peer,
                     "peer_parameters": peer_params, "lora_step_flops": lora_flops,
                     "ratio": align_flops / lora_flops})
        print(f"{family}: alignment step {align_flops / 1e12:.1f} TFLOP, LoRA step {lora_flops / 1e12:.1f} TFLOP, "
              f"ratio {align_flops / lora_flops:.3f}", flush=True)
    # Flux.2 Klein 9B reads Qwen3-8B's hidden states 9, 18 and 27: the step with the nine layers above left out of
    # the training copy (the engine's default) against every layer run, at Klein's 512 positions.
    trimmed, klein_params = alignment_step_flops("flux2_klein_9b", "qwen3_8b", 512)
    whole, _ = alignment_step_flops("flux2_klein_9b", "qwen3_8b", 512, trim=False)
    klein = {"family": "flux2_klein_9b", "encoder": "qwen3_8b", "encoder_parameters": klein_params, "positions": 512,
             "step_flops_trimmed": trimmed, "step_flops_every_layer": whole, "ratio": trimmed / whole}
    print(f"flux2_klein_9b: alignment step {trimmed / 1e12:.1f} TFLOP with the unread layers left out, "
          f"{whole / 1e12:.1f} with every layer (ratio {trimmed / whole:.3f})", flush=True)
    result = {"rows": rows, "klein_unread_layers": klein, "command": "python -m benchmarks.bench_llm_cost", "date": time.strftime("%Y-%m-%d"),
              "seconds": round(time.time() - started, 1), "torch": torch.__version__,
              "alignment": "rank 8, bfloat16 base, checkpointed blocks, default batch (32 safe + 24 unsafe prompts)",
              "lora": "one 1024x1024 picture, bfloat16, gradient checkpointing, backward through every block"}
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "llm_cost.json").write_text(json.dumps(result, indent=2))
    lines = ["| family | encoder (parameters) | alignment step | diffusion model (parameters) | LoRA step, 1024² | "
             "ratio |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['encoder']} ({r['encoder_parameters'] / 1e9:.2f}B), {r['positions']} "
                     f"positions | {r['alignment_step_flops'] / 1e12:.1f} TFLOP | {r['peer']} "
                     f"({r['peer_parameters'] / 1e9:.2f}B) | {r['lora_step_flops'] / 1e12:.1f} TFLOP | "
                     f"**{r['ratio']:.2f}** |")
    lines += ["", "| family | encoder (parameters) | alignment step, layers above hidden state 27 left out | every "
              "layer run | ratio |", "|---|---|---|---|---|",
              f"| {klein['family']} | {klein['encoder']} ({klein_params / 1e9:.2f}B), 512 positions | "
              f"{trimmed / 1e12:.1f} TFLOP | {whole / 1e12:.1f} TFLOP | **{klein['ratio']:.2f}** |"]
    (out / "llm_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
