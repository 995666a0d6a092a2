"""host_memory: the host memory SafeText adds around a large encoder, before and after sharing its weights.

At Gemma-2-2B's real width (Lumina 2's encoder: hidden 2,304, MLP 9,216, 8 query / 4 key-value heads of 256,
vocabulary 256,000), float32, random weights, at two reduced depths, extrapolated to its 26 blocks (each block adds
the same weights, so the memory is a + b x depth). Four moments of a low-rank (rank 8) run, each measured two ways
side by side, each case in a child process of its own:

* ``loaded original``: the original encoder built from float16 tensors (a ComfyUI file's): in float32 (every run
  before, and every run whose training copy is float32) against bfloat16 (``memory.original_dtype`` of a low-rank
  run on a GPU, whose training copy keeps bfloat16 weights), the model built in that precision from the start;
* ``training copy``: what the low-rank training copy adds: ``copy.deepcopy`` of the encoder with adapters on it (what
  ``loop.trainable_copy`` made before) against the copy that shares the frozen weights (``memory.share_weights``,
  what it makes now when dtype and device match);
* ``evaluation model``: the aligned model of the held-out pass, one batch of 16 prompts encoded through it: an
  ``apply_deltas`` copy against ``weights.shifted_view``;
* ``loaded file``: a rank-8 SafeText file of the encoder read back: every difference expanded and held (what
  ``SafeTextFile.load`` kept before) against the factors kept and expanded when read (``lowrank.Expansions``).

The figure is the peak resident memory during the moment less the resident memory before it, glibc's mmap threshold
fixed at 1 MB so that freed tensors leave the resident set (as ``bench_llm_memory``).

    OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.bench_host_memory [--depths 2,4]

It writes ``benchmarks/results/host_memory.json`` and ``host_memory.md``.
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

from benchmarks.common import MALLOC, depth_fit, peak_added  # noqa: E402

GEMMA2_2B = {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_attention_heads": 8,
             "num_key_value_heads": 4, "head_dim": 256, "num_hidden_layers": 26}
RANK = 8
MOMENTS = {"loaded original": ("float32", "bfloat16 (low-rank GPU run)"),
           "training copy": ("deep copy", "shared weights"),
           "evaluation model": ("apply_deltas copy", "shifted_view"),
           "loaded file": ("expanded differences", "factors, expanded when read")}
PROMPTS = [f"a {adjective} {thing} in a {place}, photo" for adjective in ("red", "quiet", "old", "small")
           for thing in ("car", "house") for place in ("street", "park")]


def _child(moment: str, variant: int, depth: int, out: Path) -> None:
    import copy

    import torch
    from transformers import Gemma2Config, Gemma2Model

    import tiny_encoders
    from safetext_core import AlignConfig, SafeTextFile, apply_deltas
    from safetext_core.encoding import consumed_outputs, tokenize
    from safetext_core.families import get_family
    from safetext_core.lowrank import Expansions, attach_adapters, expand
    from safetext_core.loop import trainable_copy
    from safetext_core.models import build_hf_text_model
    from safetext_core.weights import shifted_view

    torch.manual_seed(0)
    spec = get_family("lumina2").encoder("gemma2_2b")
    config = Gemma2Config(**{**GEMMA2_2B, "num_hidden_layers": depth})
    with torch.device("meta"):
        shapes = {"model." + k: v.shape for k, v in Gemma2Model(config).state_dict().items()}
    state = {k: torch.randn(shape) * shape[-1] ** -0.5 for k, shape in shapes.items()}
    if moment == "loaded original":  # from float16 tensors, as ComfyUI's files hold them
        half = {k: v.half() for k, v in state.items()}
        del state
        params = sum(v.numel() for v in half.values())
        dtype = torch.float32 if variant == 0 else torch.bfloat16
        added, _ = peak_added(lambda: build_hf_text_model(half, spec, dtype))
        out.write_text(json.dumps({"moment": moment, "variant": MOMENTS[moment][variant], "depth": depth,
                                   "parameters": params, "model_bytes": 4 * params, "added": added}))
        return
    model = build_hf_text_model(state, spec)
    del state
    params = sum(p.numel() for p in model.parameters())
    align_config = AlignConfig(rank=RANK)
    gen = torch.Generator().manual_seed(1)
    factors = {}
    for name, module in model.named_modules():  # rank-8 factors on the family's adapter targets
        if isinstance(module, torch.nn.Linear) and name.endswith("_proj"):
            factors[name + ".weight"] = (0.01 * torch.randn(module.weight.shape[0], RANK, generator=gen),
                                         torch.randn(RANK, module.weight.shape[1], generator=gen), float(RANK))
    tokenizer = tiny_encoders.gemma_tokenizer()

    if moment == "training copy":
        def action():
            if variant == 0:  # before: a deep copy, adapters on it
                trainee = copy.deepcopy(model).float()
                attach_adapters(trainee, RANK, RANK, spec.adapter_targets, "lumina2")
                return trainee
            return trainable_copy(model, align_config, "lumina2", spec.adapter_targets, torch.float32, False, "cpu")
    elif moment == "evaluation model":
        deltas = Expansions(factors)

        def action():
            aligned = apply_deltas(model, deltas) if variant == 0 else shifted_view(model, deltas)
            with torch.no_grad():
                outs, _ = consumed_outputs(aligned, tokenize(tokenizer, PROMPTS, spec), spec)
            return aligned, outs
    else:
        path = out.with_suffix(".safetensors")
        from safetext_core.fingerprint import fingerprint_state_dict

        SafeTextFile(family="lumina2", deltas={"gemma2_2b": Expansions(factors)},
                     fingerprints={"gemma2_2b": fingerprint_state_dict(model.state_dict())},
                     factors={"gemma2_2b": factors}).save(path)

        def action():
            file = SafeTextFile.load(path)
            if variant == 0:  # what the loader held before: every difference expanded
                return {e: {n: expand(*f) for n, f in file.factors[e].items()} for e in file.factors}
            return file
    added, _ = peak_added(action)
    out.write_text(json.dumps({"moment": moment, "variant": MOMENTS[moment][variant], "depth": depth,
                               "parameters": params, "model_bytes": 4 * params, "added": added,
                               "factor_layers": len(factors)}))


def _fit(rows: list[dict], moment: str, variant: str) -> dict:
    return depth_fit([(r["depth"], r["added"]) for r in rows if r["moment"] == moment and r["variant"] == variant], 26)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depths", default="2,4")
    parser.add_argument("--child", nargs=4, metavar=("MOMENT", "VARIANT", "DEPTH", "OUT"))
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]), Path(args.child[3]))
        return
    depths = [int(d) for d in args.depths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for depth in depths:
            for moment, variants in MOMENTS.items():
                for index, variant in enumerate(variants):  # side by side at each depth
                    out = Path(folder) / f"{len(rows)}.json"
                    run = subprocess.run([sys.executable, "-m", "benchmarks.bench_host_memory", "--child", moment,
                                          str(index), str(depth), str(out)], cwd=str(ROOT), capture_output=True,
                                         text=True, env={**os.environ, **MALLOC})
                    if run.returncode != 0:
                        raise SystemExit(f"{moment} / {variant} at depth {depth} failed:\n{run.stderr[-3000:]}")
                    rows.append(json.loads(out.read_text()))
                    print(f"{moment:17s} {variant:30s} depth {depth}: +{rows[-1]['added'] / 2**30:.2f} GiB", flush=True)
    fits = {f"{m} / {v}": _fit(rows, m, v) for m, vs in MOMENTS.items() for v in vs}
    result = {"model": GEMMA2_2B, "rank": RANK, "rows": rows, "fits": fits,
              "command": "python -m benchmarks.bench_host_memory " + " ".join(argv or sys.argv[1:]),
              "machine": os.uname().machine, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "host_memory.json").write_text(json.dumps(result, indent=2))
    gib = 2 ** 30
    lines = ["| moment | before | now | " + " | ".join(f"depth {d}: before / now" for d in depths) +
             " | **26 blocks (Gemma-2-2B): before / now** | ratio |", "|---|---|---|" + "---|" * (len(depths) + 2)]
    for moment, (old, new) in MOMENTS.items():
        cells = []
        for d in depths:
            a = next(r for r in rows if r["moment"] == moment and r["variant"] == old and r["depth"] == d)
            b = next(r for r in rows if r["moment"] == moment and r["variant"] == new and r["depth"] == d)
            cells.append(f"{a['added'] / gib:.2f} / {b['added'] / gib:.2f} GiB")
        at_old, at_new = fits[f"{moment} / {old}"]["at_26"], fits[f"{moment} / {new}"]["at_26"]
        # a ratio to a figure within the sampling's noise (factors of a few MB) would mean nothing
        ratio = f"{at_old / at_new:.0f}x" if at_new >= 0.05 * gib else "- (now about 0)"
        lines.append(f"| {moment} | {old} | {new} | " + " | ".join(cells) +
                     f" | **{at_old / gib:.2f} / {at_new / gib:.2f} GiB** | {ratio} |")
    (results / "host_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
