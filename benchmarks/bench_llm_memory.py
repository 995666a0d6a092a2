"""llm_memory: the memory of aligning a 4B-parameter LLM encoder (Z-Image's Qwen3-4B), measured at reduced depth.

Issue 13's target: under 20 GB of GPU memory to align a 4B LLM encoder at the default batch. No GPU here, so the
measurement runs on the CPU with Qwen3-4B's real width (hidden 2,560, 32 query / 8 key-value heads of 128, MLP
9,728, vocabulary 151,936) and fewer blocks, and extrapolates along the depth: every block adds the same frozen
weights, factors, optimiser state and activations, so the memory is a + b x depth and the fit on two depths gives
the 36 of the real model.

Each case is one child process that builds the encoder (float32, random weights, as ``load_encoders`` keeps the
original) and runs ``safetext_core.align`` for the default configuration at rank 8 (batch 16 unsafe + 16 safe, the
pairs and word salads of a default step, the shipped prompts, Z-Image's template), one or more steps, no
validation. A thread samples the process's resident memory every 5 ms; the figure is the peak during ``align``
less the resident memory before it (the original encoder and Python), with glibc's mmap threshold fixed at 1 MB
so that freed tensors leave the resident set: what the run adds, which on a GPU run is what
lands on the device (the original stays on the host; the trainee, its factors, AdamW's moments and the
activations go to the GPU). Two settings side by side at each depth:

* ``float32``: the copy in float32, every activation kept (a CPU run's "auto", and every run before this version);
* ``bfloat16 + checkpointing``: frozen weights in bfloat16, factors in float32, each block's activations recomputed
  in the backward pass (a GPU run's "auto" for this family).

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.bench_llm_memory [--depths 2,4] [--steps 1]

It writes ``benchmarks/results/llm_memory.json`` and ``llm_memory.md``. The tokenizer is the tests' small Qwen-style
one (real Qwen3 vocabulary files are not at hand offline); the token counts per step are recorded, and activation
memory grows with them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import MALLOC, depth_fit, peak_added, resident_bytes  # noqa: E402

QWEN3_4B = {"hidden_size": 2560, "intermediate_size": 9728, "num_attention_heads": 32, "num_key_value_heads": 8,
            "head_dim": 128, "vocab_size": 151936, "num_hidden_layers": 36}
SETTINGS = {"float32": {"base_dtype": "float32", "gradient_checkpointing": "off"},
            "bfloat16+checkpointing": {"base_dtype": "bfloat16", "gradient_checkpointing": "on"}}
RANK = 8
def _child(setting: str, depth: int, steps: int, out: Path) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3Model

    import tiny_encoders
    from safetext_core import AlignConfig, load_prompt_sets
    from safetext_core.encoding import EncoderSet
    from safetext_core.loop import align
    from safetext_core.models import PrefixedEncoder

    torch.manual_seed(0)
    config = Qwen3Config(**{**QWEN3_4B, "num_hidden_layers": depth}, bos_token_id=None, eos_token_id=None,
                         pad_token_id=None, use_cache=False)
    with torch.no_grad():
        model = PrefixedEncoder(Qwen3Model(config)).float().eval().requires_grad_(False)
    encoders = EncoderSet("z_image", {"qwen3_4b": model}, {"qwen3_4b": tiny_encoders.qwen_tokenizer()})
    params = sum(p.numel() for p in model.parameters())
    align_config = AlignConfig(rank=RANK, steps=steps, eval_every=0, mine_every=0, **SETTINGS[setting])
    tokens: list[int] = []
    from safetext_core import encoding

    real_tokenize = encoding.tokenize

    def counting_tokenize(*args, **kwargs):  # the positions each training pass runs over
        batch = real_tokenize(*args, **kwargs)
        tokens.append(int(batch["input_ids"].numel()))
        return batch

    import safetext_core.loop as loop

    loop.tokenize = counting_tokenize
    prompts = load_prompt_sets()
    before = resident_bytes()
    started = time.perf_counter()
    added, result = peak_added(lambda: align(encoders, prompts, align_config))
    seconds = time.perf_counter() - started
    factors = sum(up.numel() + down.numel() for f in result.factors.values() for up, down, _ in f.values())
    out.write_text(json.dumps({"setting": setting, "depth": depth, "steps": steps, "parameters": params,
                               "rss_before": before, "peak_added": added, "seconds": seconds,
                               "factor_parameters": factors, "positions_tokenized_per_step": sum(tokens) // steps,
                               "loss": result.history[-1]["loss"]}))


def _fit(rows: list[dict], setting: str) -> dict:
    return depth_fit([(r["depth"], r["peak_added"]) for r in rows if r["setting"] == setting], 36)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="2,4")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("SETTING", "DEPTH", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), args.steps, Path(args.child[2]))
        return
    depths = [int(d) for d in args.depths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for depth in depths:
            for setting in SETTINGS:  # side by side at each depth
                out = Path(folder) / f"{setting}-{depth}.json"
                run = subprocess.run([sys.executable, "-m", "benchmarks.bench_llm_memory", "--steps", str(args.steps),
                                      "--child", setting, str(depth), str(out)], cwd=str(ROOT), capture_output=True,
                                     text=True, env={**os.environ, **MALLOC})
                if run.returncode != 0:
                    raise SystemExit(f"{setting} at depth {depth} failed:\n{run.stderr[-3000:]}")
                rows.append(json.loads(out.read_text()))
                print(f"{setting:24s} depth {depth}: +{rows[-1]['peak_added'] / 2**30:.2f} GiB, "
                      f"{rows[-1]['seconds']:.0f} s", flush=True)
    fits = {s: _fit(rows, s) for s in SETTINGS}
    result = {"model": QWEN3_4B, "rank": RANK, "steps": args.steps, "rows": rows, "fits": fits,
              "command": "python -m benchmarks.bench_llm_memory " + " ".join(argv or sys.argv[1:]),
              "machine": os.uname().machine, "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d")}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "llm_memory.json").write_text(json.dumps(result, indent=2))
    gib = 2 ** 30
    lines = ["| setting | " + " | ".join(f"depth {d}: added / s a step" for d in depths) +
             " | per block | fixed | **36 blocks (Qwen3-4B)** |", "|---|" + "---|" * (len(depths) + 3)]
    for setting in SETTINGS:
        cells = []
        for d in depths:
            row = next(r for r in rows if r["setting"] == setting and r["depth"] == d)
            cells.append(f"{row['peak_added'] / gib:.2f} GiB / {row['seconds'] / args.steps:.0f} s")
        fit = fits[setting]
        lines.append(f"| {setting} | " + " | ".join(cells) +
                     f" | {fit['per_block'] / gib:.3f} GiB | {fit['fixed'] / gib:.2f} GiB | **{fit['at_36'] / gib:.1f} GiB** |")
    ratio = fits["float32"]["at_36"] / fits["bfloat16+checkpointing"]["at_36"]
    lines.append(f"\nfloat32 / bfloat16+checkpointing at 36 blocks: {ratio:.2f}x")
    (results / "llm_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
