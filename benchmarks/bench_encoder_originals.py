"""encoder_originals: what the stored original outputs cost for the T5 and LLM families, at full width.

Training encodes the original encoder's consumed outputs once for every prompt a run will use and keeps them
(``loop.OriginalOutputs``, float32) unless the encoder is a T5 / Gemma-2 trained low-rank, whose originals are
recomputed (docs/encoders.md). For CLIP a stored prompt is 77 x width; for Flux's T5-XXL 256 positions x 4096
(ComfyUI pads to 256 and the transformer consumes the padding), for Lumina 2's Gemma-2-2B the system prompt and
the prompt x 2304.

The stored size depends only on the output width and the positions, so the encoders here have the real output
width (T5-XXL: d_model 4096; Gemma-2-2B: hidden 2304) and one block with narrow inner layers (feed-forward 64,
one 16-wide head for T5, one 256-wide head for Gemma) and the tests' 600-token vocabularies: the measurement
takes seconds and no lock. It encodes 64 shipped safe prompts through ``OriginalOutputs``, full fine-tuning
(stored) and rank 4 (recomputed), and reports bytes per prompt and for a default run's prompt count:

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_encoder_originals

It writes ``benchmarks/results/encoder_originals.json`` and prints a Markdown table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _prompt_counts() -> dict[str, int]:
    """How many prompts a default run (AlignConfig()) stores originals for, on the shipped sets."""
    from safetext_core import AlignConfig, load_prompt_sets

    config, sets = AlignConfig(), load_prompt_sets()
    unsafe = len(sets.unsafe_part("train")) + len(sets.pair_part("train"))
    # Mining runs (mine_every < steps), so every safe prompt, pair side and word salad can be drawn.
    safe = len(sets.safe_part("train")) + len(sets.pair_part("train")) + config.preserve_pool
    planned_unsafe = min(unsafe, config.steps * (config.batch_size + round(config.pair_share * config.batch_size)))
    return {"unsafe_pool": unsafe, "unsafe_stored_at_most": planned_unsafe, "safe_stored": safe}


def _narrow_t5() -> dict[str, torch.Tensor]:
    """T5 with T5-XXL's output width (4096) and one narrow block (one 16-wide head, feed-forward 64)."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=600, d_model=4096, d_kv=16, d_ff=64, num_layers=1, num_heads=1,
                      relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dropout_rate=0.0)
    state = {k: v for k, v in T5EncoderModel(config).state_dict().items() if k != "encoder.embed_tokens.weight"}
    return {k: (torch.ones_like(v) if "norm" in k else 0.05 * torch.randn_like(v)) for k, v in state.items()}


def main() -> None:
    from dataclasses import replace

    from safetext_core import AlignConfig, load_prompt_sets
    from safetext_core.families import get_family
    from safetext_core.loop import OriginalOutputs, trainable_copy
    from safetext_core.models import build_text_model
    import tiny_encoders

    counts = _prompt_counts()
    run_prompts = counts["unsafe_stored_at_most"] + counts["safe_stored"]
    prompts = load_prompt_sets().safe_part("train")[:64]
    cases = [
        ("flux", "t5xxl", _narrow_t5),
        ("sd3", "t5xxl", _narrow_t5),
        ("chroma", "t5xxl", _narrow_t5),
        ("lumina2", "gemma2_2b", lambda: tiny_encoders.gemma2_state(hidden=2304, layers=2, heads=1, kv_heads=1,
                                                                      head_dim=256, intermediate=64)),
    ]
    tokenizers = {"t5xxl": tiny_encoders.t5_tokenizer(), "gemma2_2b": tiny_encoders.gemma_tokenizer()}
    rows = []
    cpu = torch.device("cpu")
    for family, encoder, make in cases:
        spec = get_family(family).encoder(encoder)
        with torch.no_grad():
            model = build_text_model(make(), family, encoder)
        stored = OriginalOutputs(model, tokenizers[encoder], prompts, spec, cpu, cpu)
        held = sum(o.numel() * o.element_size() for o in stored.outputs)
        trainee, _ = trainable_copy(model, replace(AlignConfig(), rank=4), family, spec.adapter_targets)
        recomputed = OriginalOutputs(trainee, tokenizers[encoder], prompts, spec, cpu, cpu)
        kept = sum(o.numel() * o.element_size() for o in recomputed.outputs)
        rows.append({"family": family, "encoder": encoder, "width": stored.outputs[0].shape[-1],
                     "positions": stored.outputs[0].shape[1], "bytes_per_prompt_full": held / len(prompts),
                     "default_run_prompts": run_prompts, "default_run_bytes_full": held / len(prompts) * run_prompts,
                     "bytes_low_rank": kept, "recomputed_low_rank": recomputed.recompute})
        del model, stored, trainee, recomputed
    result = {"counts": counts, "rows": rows, "prompts_measured": len(prompts),
              "note": "positions: Flux pads to 256 and SD 3 to 77 (all consumed); Chroma and Lumina 2 store the "
                      "longest measured prompt's length with the tests' small tokenizers (real T5 / Gemma "
                      "vocabularies give other counts); Lumina 2 includes the system prompt"}
    out = ROOT / "benchmarks" / "results" / "encoder_originals.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| family | encoder | width | positions stored | full fine-tuning: MiB a prompt | default run "
          f"({run_prompts:,} prompts) | low-rank: stored |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['encoder']} | {r['width']} | {r['positions']} | "
              f"{r['bytes_per_prompt_full'] / 2**20:.2f} | {r['default_run_bytes_full'] / 2**30:.1f} GiB | "
              f"{r['bytes_low_rank']} B (recomputed) |")


if __name__ == "__main__":
    main()
