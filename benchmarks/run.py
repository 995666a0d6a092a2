"""Run the SafeText benchmark suite and write ``benchmarks/results/<device-tag>.json`` and ``.md``.

Usage, from the repository root::

    python -m benchmarks                     # full suite on CUDA if present, else CPU
    python -m benchmarks --quick             # tiny models: a smoke test of every code path (< 2 min on CPU)
    python -m benchmarks --device cpu --only generation_overhead --gen-size 256 --gen-rounds 2

Every figure is a ratio of two quantities measured side by side in the same run. Results of
benchmarks run earlier with the same device tag are kept when ``--only`` runs a subset.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # `python benchmarks/run.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.run import main as _main  # noqa: E402

    raise SystemExit(_main())

import torch

from . import (bench_align, bench_checkpoints, bench_family_sizes, bench_file, bench_generation, bench_lowrank,
               bench_memory, bench_peft)
from .common import RESULTS_DIR, BenchResult, Options, Row, device_tag, environment

BENCHMARKS: dict[str, Callable[[Options], BenchResult]] = {
    bench_align.NAME: bench_align.run,
    bench_memory.NAME: bench_memory.run,
    bench_generation.NAME: bench_generation.run,
    bench_file.NAME: bench_file.run,
    bench_lowrank.NAME: bench_lowrank.run,
    bench_peft.NAME: bench_peft.run,
    bench_family_sizes.NAME: bench_family_sizes.run,
    bench_checkpoints.NAME: bench_checkpoints.run,
}

# Smaller loops for --quick (tiny models; only checks that every path runs).
QUICK = dict(warmup=1, repeats=2, gen_steps=2, gen_rounds=1, real_steps=2, load_repeats=2, ranks=(16,))


def parse_args(argv: list[str] | None = None) -> tuple[Options, list[str], Path]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda if available")
    parser.add_argument("--quick", action="store_true", help="tiny models and loops: smoke test, figures meaningless")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help=f"run only these (repeatable or comma-separated): {', '.join(BENCHMARKS)}")
    parser.add_argument("--warmup", type=int, help="warm-up iterations of timed loops (default 2)")
    parser.add_argument("--repeats", type=int, help="timed iterations; the median is reported (default 5)")
    parser.add_argument("--gen-size", type=int, help="generation resolution in pixels (default 512)")
    parser.add_argument("--gen-steps", type=int, help="denoising steps per generation (default 20)")
    parser.add_argument("--gen-rounds", type=int, help="interleaved a/b/c rounds (default 5)")
    parser.add_argument("--gen-dtype", choices=("auto", "float16", "float32", "bfloat16"),
                        help="pipeline precision (default auto: float16 on CUDA, float32 on CPU)")
    parser.add_argument("--real-steps", type=int, help="alignment steps for the real deltas (default 30)")
    parser.add_argument("--load-repeats", type=int, help="file loads timed per format (default 5)")
    parser.add_argument("--ranks", help="low-rank export ranks, comma-separated (default 16,64,128)")
    parser.add_argument("--esd-methods", help="ESD variants: noxattn (ESD-u), xattn (ESD-x), full (default noxattn)")
    parser.add_argument("--memory-batches", help="extra batch sizes for align_peak_memory, comma-separated (e.g. 8,4)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in BENCHMARKS.items():
            module = sys.modules[fn.__module__]
            print((module.__doc__ or name).strip().splitlines()[0])
        raise SystemExit(0)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    opts = Options(device=device, quick=args.quick)
    if args.quick:
        for key, value in QUICK.items():
            setattr(opts, key, value)
    for key in ("warmup", "repeats", "gen_size", "gen_steps", "gen_rounds", "gen_dtype", "real_steps",
                "load_repeats", "seed"):
        if getattr(args, key) is not None:
            setattr(opts, key, getattr(args, key))
    if args.ranks:
        opts.ranks = tuple(int(r) for r in args.ranks.split(","))
    if args.memory_batches:
        opts.memory_batches = tuple(int(b) for b in args.memory_batches.split(","))
    if args.esd_methods:
        opts.esd_methods = tuple(m.strip() for m in args.esd_methods.split(","))
    selected = [n.strip() for item in args.only for n in item.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in selected if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    return opts, selected, args.out_dir


def release_memory(device: str) -> None:
    """Give freed memory back between benchmarks (the next one may need all of a small machine's RAM)."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------------------- reporting

def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.3f}" if abs(ratio) >= 0.01 else f"{ratio:.2e}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = "| benchmark | compared | measured | ratio | target | result | conditions |\n|---|---|---|---|---|---|---|\n"
    lines = []
    for row in rows:
        cells = [row["benchmark"], row["compared"], row["measured"], format_ratio(row["ratio"]), row["target"],
                 f"**{row['verdict']}**" if row["verdict"] != "-" else "-", row["conditions"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return head + "\n".join(lines) + "\n"


def ordered_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for name in BENCHMARKS if name in data["benchmarks"] for row in data["benchmarks"][name]["rows"]]


def render_markdown(data: dict[str, Any]) -> str:
    meta = data["meta"]
    env = meta["environment"]
    parts = [f"# SafeText benchmarks: {env['device']} (the latest run; each run's machine is under Runs)\n",
             f"Device tag `{meta['device_tag']}`; torch {env['torch']}, transformers {env['transformers']}, "
             f"diffusers {env['diffusers']}, safetensors {env['safetensors']}, Python {env['python']}"
             + (f", CUDA {env['cuda']} (TF32 matmul {env['tf32_matmul']}, cuDNN TF32 {env['tf32_cudnn']})" if "cuda" in env else "")
             + ".\n",
             "Models: SD 1.5 architectures (CLIP-L text encoder, UNet, VAE) with random weights, built from configs.\n",
             markdown_table(ordered_rows(data)),
             "\n## Runs\n"]
    for name in BENCHMARKS:
        entry = data["benchmarks"].get(name)
        if entry is None:
            continue
        opts = entry["options"]
        line = f"- `{name}`: `{entry['command']}` at {entry['finished']}, {entry['seconds']:.0f} s; "
        if entry.get("device"):  # one device tag can span machines of the same kind (2 CPUs, another model)
            line += f"on {entry['device']}; "
        if "loadavg_end" in entry:
            line += f"load average {entry['loadavg_start'][0]:.1f} -> {entry['loadavg_end'][0]:.1f}; "
        line += f"warm-up {opts['warmup']}, repeats {opts['repeats']}"
        if name == bench_generation.NAME:
            line += f", size {opts['gen_size']}, {opts['gen_steps']} steps, {opts['gen_rounds']} rounds"
        if name == bench_file.NAME:
            line += f", real alignment {opts['real_steps']} steps, ranks {tuple(opts['ranks'])}"
        if opts["quick"]:
            line += " **(--quick: tiny models, figures meaningless)**"
        if entry.get("error"):
            line += f"\n  - ERROR: {entry['error'].strip().splitlines()[-1]}"
        parts.append(line)
    return "\n".join(parts) + "\n"


def write_results(data: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{data['meta']['device_tag']}.json"
    md_path = out_dir / f"{data['meta']['device_tag']}.md"
    json_path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(data))
    return json_path, md_path


# --------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    opts, selected, out_dir = parse_args(argv)
    torch.manual_seed(opts.seed)
    tag = device_tag(opts.device, opts.quick)
    json_path = out_dir / f"{tag}.json"
    data: dict[str, Any] = {"benchmarks": {}}
    if json_path.is_file():  # keep earlier results of benchmarks not run now
        try:
            data = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            pass
    data["meta"] = {"device_tag": tag, "environment": environment(opts.device)}
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"SafeText benchmarks on {data['meta']['environment']['device']} -> {out_dir}/{tag}.md", flush=True)
    failures = 0
    for name in selected:
        print(f"\n== {name} ...", flush=True)
        start = time.perf_counter()
        # Load average before and after: on a shared machine, other processes slow the timings.
        entry: dict[str, Any] = {"options": opts.as_dict(), "command": command.strip(), "loadavg_start": os.getloadavg(),
                                 "device": data["meta"]["environment"]["device"]}
        try:
            result = BENCHMARKS[name](opts)
            entry.update(rows=[vars(r) for r in result.rows], raw=result.raw)
        except Exception:  # keep going: one broken benchmark must not lose the others' figures
            failures += 1
            entry.update(rows=[vars(Row(name, "(benchmark failed)", "see JSON 'error'", None, "-", False))],
                         error=traceback.format_exc())
            print(entry["error"], file=sys.stderr, flush=True)
        entry["seconds"] = time.perf_counter() - start
        entry["loadavg_end"] = os.getloadavg()
        entry["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        data["benchmarks"][name] = entry
        write_results(data, out_dir)  # after each benchmark, so an interrupted run keeps what it measured
        print(markdown_table(entry["rows"]), flush=True)
        print(f"({entry['seconds']:.0f} s)", flush=True)
        release_memory(opts.device)
    json_out, md_out = write_results(data, out_dir)
    print("\n" + markdown_table(ordered_rows(data)))
    print(f"Wrote {json_out} and {md_out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
