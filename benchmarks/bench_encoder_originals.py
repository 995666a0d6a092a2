"""encoder_originals: what the stored original outputs cost for the T5 and LLM families, at full width.

Training encodes the original encoder's consumed outputs once for every prompt a run will use and keeps them
(``loop.OriginalOutputs``, float32, on the host when training on a GPU). For CLIP that is 77 x width per prompt;
for Flux's T5-XXL it is 256 positions x 4096 (ComfyUI pads to 256 and the transformer consumes the padding), for
Lumina 2's Gemma-2-2B the system prompt and the prompt x 2304.

This builds reduced-depth, full-width encoders with random weights (T5-XXL: d_model 4096, d_ff 10240, 64 heads;
Gemma-2-2B: hidden 2304, d_ff 9216, 8 x 256 query / 4 x 256 key-value heads; one or two blocks, and the tests'
600-token vocabulary instead of 32,128 / 256,000: the stored outputs depend only on the width and the positions,
not on the depth or the vocabulary), encodes real shipped prompts
through ``OriginalOutputs`` and reports the bytes it holds per prompt and per default run, and the CPU time of the
one-block forward. Run it under the heavy-job lock:

    flock /tmp/safetext-heavy.lock env OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.bench_encoder_originals

It writes ``benchmarks/results/encoder_originals.json`` and prints a Markdown table.
"""
from __future__ import annotations

import json
import resource
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


def main() -> None:
    from safetext_core.families import get_family
    from safetext_core.loop import OriginalOutputs
    from safetext_core.models import build_text_model
    import tiny_encoders

    counts = _prompt_counts()
    prompts = [p for p in __import__("safetext_core").load_prompt_sets().safe_part("train")[:32]]
    rows = []
    cases = [
        ("flux", "t5xxl", lambda: tiny_encoders.t5_state(d_model=4096, layers=1, heads=64, d_ff=10240, vocab=tiny_encoders.VOCAB)),
        ("chroma", "t5xxl", lambda: tiny_encoders.t5_state(d_model=4096, layers=1, heads=64, d_ff=10240, vocab=tiny_encoders.VOCAB)),
        ("lumina2", "gemma2_2b", lambda: tiny_encoders.gemma2_state(hidden=2304, layers=2, heads=8, kv_heads=4,
                                                                      head_dim=256, intermediate=9216, vocab=tiny_encoders.VOCAB)),
    ]
    tokenizers = {"t5xxl": tiny_encoders.t5_tokenizer(), "gemma2_2b": tiny_encoders.gemma_tokenizer()}
    for family, encoder, make in cases:
        spec = get_family(family).encoder(encoder)
        with torch.no_grad():
            model = build_text_model(make(), family, encoder)
        started = time.process_time()
        stored = OriginalOutputs(model, tokenizers[encoder], prompts, spec, torch.device("cpu"), torch.device("cpu"))
        seconds = time.process_time() - started
        held = sum(o.numel() * o.element_size() for o in stored.outputs)
        per_prompt = held / len(prompts)
        total = per_prompt * (counts["unsafe_stored_at_most"] + counts["safe_stored"])
        rows.append({"family": family, "encoder": encoder, "width": model.config.hidden_size if hasattr(
            model.config, "hidden_size") else model.config.d_model, "positions": stored.outputs[0].shape[1],
            "bytes_per_prompt": per_prompt, "default_run_prompts": counts["unsafe_stored_at_most"] + counts["safe_stored"],
            "default_run_bytes": total, "cpu_seconds_per_prompt_one_block": seconds / len(prompts)})
        del model, stored
    result = {"counts": counts, "rows": rows, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "note": "positions: Flux pads to 256 (all consumed); Chroma and Lumina 2 store the longest prompt's "
                      "length (tiny test tokenizer, so token counts are indicative); Lumina 2 includes the system prompt"}
    out = ROOT / "benchmarks" / "results" / "encoder_originals.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| family | encoder | positions stored | MiB per prompt (fp32) | prompts in a default run | GiB in a default run |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['encoder']} | {r['positions']} | {r['bytes_per_prompt'] / 2**20:.2f} | "
              f"{r['default_run_prompts']:,} | {r['default_run_bytes'] / 2**30:.1f} |")


if __name__ == "__main__":
    main()
