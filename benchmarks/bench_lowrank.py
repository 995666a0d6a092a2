"""lowrank_vs_full: low-rank (LoRA) alignment against full fine-tuning on SD 1.5's CLIP-L, and the files they write.

* **Step time**: the core's real training loop (:func:`safetext_core.align`, default configuration, random-weight
  CLIP-L of the real size, real CLIP tokenizer), full fine-tuning and each rank in turn, timed from one progress
  event to the next (median of ``repeats`` steps after ``warmup``), as ``align_step_vs_esd`` times it.
* **Peak memory**: each mode in a fresh child process (as ``align_peak_memory``): on a CPU the child's peak
  resident set over ``align`` (``VmHWM``, reset once the encoder is built) minus its resident set then; on CUDA
  ``max_memory_allocated``. On a CPU the resident set also counts pages the C allocator keeps after tensors are
  freed, so a second child per mode measures the **peak of live tensors** instead (what ``max_memory_allocated``
  measures on a GPU): the bytes allocated minus freed within ``align``, from ``torch.profiler``'s memory events.
  ``python -m benchmarks.bench_lowrank --categories RANK`` splits one mode's peak by category (parameters,
  optimizer state, inputs, activations, gradients) from the profiler's memory timeline; that export needs about
  20 GB of host memory for real-size CLIP-L, so the suite does not run it.
* **File size**: the SafeText file each mode writes for SD 1.5 (CLIP-L) and SDXL (CLIP-L + OpenCLIP bigG).
  CLIP-L files are written from real alignments (the timed runs); the SDXL full-weight size is computed from
  bigG's parameter count (a 2.6 GB file is not written for a benchmark), the SDXL low-rank file is written from
  random factors of the real shapes (its size depends only on the shapes).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .common import REPO_ROOT, BenchResult, Options, Row, clip_l_encoder_set, fmt_bytes, fmt_seconds, median, \
    prompt_sets, synchronize

NAME = "lowrank_vs_full"
RANKS = (8,)  # the rank measured on the real MiniLM (docs/lowrank.md); add more to compare
BIGG = dict(hidden=1280, layers=32, intermediate=5120)  # OpenCLIP ViT-bigG/14 text tower
CLIP_L = dict(hidden=768, layers=12, intermediate=3072)


def _config(rank: int, steps: int, seed: int) -> Any:
    from safetext_core import AlignConfig

    return AlignConfig(steps=steps, eval_every=0, early_stop=False, seed=seed, rank=rank, lowrank_method="adapters")


def step_times(opts: Options, rank: int, out: Path | None = None) -> tuple[list[float], Any]:
    """Per-step seconds of ``align`` (full when ``rank`` is 0) after ``opts.warmup`` uncounted steps; with ``out``
    the run's SafeText file is written there."""
    from safetext_core import SafeTextFile, align

    encoders = clip_l_encoder_set(opts.quick, opts.seed)
    prompts, _ = prompt_sets()
    stamps: list[float] = []

    def progress(event: Any) -> None:
        if event.phase == "train":
            synchronize(opts.device)
            stamps.append(time.perf_counter())

    result = align(encoders, prompts, _config(rank, opts.warmup + opts.repeats + 1, opts.seed), progress=progress,
                   device=opts.device)
    intervals = [b - a for a, b in zip(stamps, stamps[1:])][opts.warmup:]
    if out is not None:
        SafeTextFile(family="sd1", deltas=result.deltas, fingerprints=encoders.fingerprints(),
                     config={"rank": rank}, factors=result.factors).save(out)
    return intervals, result


# torch.profiler's memory categories, in the order of the timeline's size columns (after a leading one for
# tensors it could not place): torch/profiler/_memory_profiler.py, _CATEGORY_TO_COLORS.
TIMELINE_CATEGORIES = ("parameter", "optimizer_state", "input", "temporary", "activation", "gradient",
                       "autograd_detail", "unknown")


def tensor_peak(timeline: Any) -> dict[str, Any]:
    """Peak of the summed sizes of a memory timeline (``[times, [sizes by category]]``, as torch.profiler's
    ``export_memory_timeline`` writes it) and the split by category at that moment, in bytes."""
    times, sizes = timeline
    totals = [sum(row) for row in sizes]
    at = max(range(len(totals)), key=totals.__getitem__)
    split = dict(zip(TIMELINE_CATEGORIES, sizes[at][-len(TIMELINE_CATEGORIES):]))
    return {"peak_bytes": totals[at], "by_category": split, "seconds_in": (times[at] - times[0]) / 1e6}


def allocation_peak(prof: Any) -> int:
    """Highest sum of the tensor bytes allocated minus freed since profiling began, from the ``[memory]`` records
    of a torch.profiler run with ``profile_memory=True`` (one per allocation and free). Cheap, unlike the
    categorised timeline, whose export took about 20 GB of host memory for three steps of CLIP-L."""
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, delta in records:
        live += delta
        peak = max(peak, live)
    return peak


def profiled_align(rank: int, quick: bool, device: str, steps: int, categories: bool = False) -> dict[str, Any]:
    """Run ``align`` for one mode under torch.profiler (CPU) and return the peak of live tensors allocated in it;
    with ``categories`` also the split by category at the timeline's peak (needs far more host memory)."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    from safetext_core import align

    encoders = clip_l_encoder_set(quick, 0)
    prompts, _ = prompt_sets()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=categories,
                 with_stack=categories) as prof:
        align(encoders, prompts, _config(rank, steps, 0), device=device)
    out: dict[str, Any] = {"rank": rank, "device": device, "measure": "live tensors allocated in align()",
                           "peak_bytes": allocation_peak(prof)}
    if categories:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA snapshots; the CPU timeline has none
            prof.export_memory_timeline(str(Path(tmp) / "timeline.json"), device="cpu")
            out["timeline"] = tensor_peak(json.loads((Path(tmp) / "timeline.json").read_text()))
    return out


def _child(rank: int, quick: bool, device: str, steps: int, tensors: bool = False) -> None:
    """Child process: peak memory of ``align`` for one mode; prints one JSON line. ``tensors``: the peak of live
    tensors from torch.profiler instead of the resident set (CPU)."""
    if tensors:
        print(json.dumps(profiled_align(rank, quick, device, steps)))
        return
    from safetext_core import align

    from .bench_memory import _reset_peak_rss, _status_bytes

    encoders = clip_l_encoder_set(quick, 0)
    prompts, _ = prompt_sets()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    reset = _reset_peak_rss()
    rss = _status_bytes("VmRSS")
    align(encoders, prompts, _config(rank, steps, 0), device=device)
    peak = (torch.cuda.max_memory_allocated() - base) if device == "cuda" else _status_bytes("VmHWM") - rss
    print(json.dumps({"rank": rank, "peak_bytes": peak, "reset": reset, "device": device}))


def peak_memory(opts: Options, rank: int, tensors: bool = False) -> dict[str, Any]:
    steps = 2 if opts.quick else 3
    code = (f"from benchmarks.bench_lowrank import _child; "
            f"_child({rank}, {opts.quick}, {opts.device!r}, {steps}, {tensors})")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(REPO_ROOT))
    if done.returncode != 0:
        raise RuntimeError(f"memory child for rank {rank} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sdxl_sizes(rank: int, folder: Path) -> dict[str, float]:
    """SDXL (CLIP-L + bigG): the low-rank file written from random factors of the real shapes; the full-weight
    file's size from the parameter counts (float32 differences of every trained parameter)."""
    from safetext_core import SafeTextFile
    from safetext_core.fingerprint import fingerprint_state_dict
    from safetext_core.lowrank import in_half_precision

    factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = {}
    full = 0
    for encoder, shape in (("clip_l", CLIP_L), ("clip_g", BIGG)):
        h, inter, layers = shape["hidden"], shape["intermediate"], shape["layers"]
        params = {}
        for layer in range(layers):
            base = f"text_model.encoder.layers.{layer}."
            for name, (out_f, in_f) in (("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (h, h)),
                                        ("self_attn.v_proj", (h, h)), ("self_attn.out_proj", (h, h)),
                                        ("mlp.fc1", (inter, h)), ("mlp.fc2", (h, inter))):
                # stored as training stores them (lowrank.factors_from_params): float16 values, two bytes each
                params[base + name + ".weight"] = (*in_half_precision(torch.randn(out_f, rank) * 1e-3,
                                                                      torch.randn(rank, in_f) * 1e-3), float(rank))
        factors[encoder] = params
        # every parameter but the frozen position embedding (and text_projection for CLIP-L, absent there)
        per_layer = 4 * (h * h + h) + (inter * h + inter) + (h * inter + h) + 4 * h
        full += layers * per_layer + 49408 * h + 2 * h + (h * h if encoder == "clip_g" else 0)
    deltas = {e: {p: torch.zeros(0) for p in ps} for e, ps in factors.items()}
    fp = fingerprint_state_dict({"w": torch.ones(4)})
    path = SafeTextFile(family="sdxl", deltas=deltas, fingerprints={"clip_l": fp, "clip_g": fp}, config={"rank": rank},
                        factors=factors).save(folder / f"sdxl_r{rank}.safetensors")
    return {"lowrank_bytes": float(path.stat().st_size), "full_bytes_computed": float(full * 4)}


def run(opts: Options) -> BenchResult:
    ranks = (2, 4) if opts.quick else RANKS
    rows: list[Row] = []
    raw: dict[str, Any] = {"ranks": list(ranks), "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        full_steps, _ = step_times(opts, 0, folder / "full.safetensors")
        full_bytes = (folder / "full.safetensors").stat().st_size
        full_mem = peak_memory(opts, 0)
        on_cpu = opts.device == "cpu"
        full_live = peak_memory(opts, 0, tensors=True) if on_cpu else None
        raw["modes"]["full"] = {"step_s": full_steps, "file_bytes": full_bytes, "memory": full_mem,
                                "live_tensors": full_live}
        for rank in ranks:
            steps, result = step_times(opts, rank, folder / f"r{rank}.safetensors")
            size = (folder / f"r{rank}.safetensors").stat().st_size
            mem = peak_memory(opts, rank)
            live = peak_memory(opts, rank, tensors=True) if on_cpu else None
            sdxl = sdxl_sizes(rank, folder)
            raw["modes"][f"rank{rank}"] = {"step_s": steps, "file_bytes": size, "memory": mem, "sdxl": sdxl,
                                           "live_tensors": live}
            a, b = median(steps), median(full_steps)
            cond = (f"SD 1.5 CLIP-L ({'toy' if opts.quick else 'real size'}, random weights), default config, "
                    f"{opts.device}, median of {len(steps)} steps")
            rows.append(Row(NAME, f"rank-{rank} step vs full fine-tuning step", f"{fmt_seconds(a)} vs {fmt_seconds(b)}",
                            a / b, "<= 1.0", a <= b * 1.05, cond,
                            "" if a <= b else ("PASS (within noise)" if a <= b * 1.05 else "")))
            pa, pb = mem["peak_bytes"], full_mem["peak_bytes"]
            rows.append(Row(NAME, f"rank-{rank} peak memory vs full", f"{fmt_bytes(pa)} vs {fmt_bytes(pb)}", pa / pb,
                            "< 1.0", pa < pb, f"peak over align() above the built encoder; {opts.device}"
                            + (" resident set (freed pages the allocator keeps count)" if on_cpu else "")))
            if live is not None and full_live is not None:
                la, lb = live["peak_bytes"], full_live["peak_bytes"]
                rows.append(Row(NAME, f"rank-{rank} peak live tensors vs full", f"{fmt_bytes(la)} vs {fmt_bytes(lb)}",
                                la / lb, "< 1.0", la < lb, "torch.profiler: bytes allocated minus freed within align() "
                                "(the trainee copy included, the built encoder not); what max_memory_allocated "
                                "measures on a GPU"))
            rows.append(Row(NAME, f"rank-{rank} SD 1.5 file vs full-weight file", f"{fmt_bytes(size)} vs "
                            f"{fmt_bytes(full_bytes)}", size / full_bytes, "-", None, "float16 factors / float32 differences"))
            # the target: at most 2% of the encoder (float32 CLIP-L: 123M parameters)
            encoder_bytes = 123_060_480 * 4 if not opts.quick else full_bytes
            rows.append(Row(NAME, f"rank-{rank} SD 1.5 file vs CLIP-L (fp32)", f"{fmt_bytes(size)} vs "
                            f"{fmt_bytes(encoder_bytes)}", size / encoder_bytes, "<= 0.02", size / encoder_bytes <= 0.02,
                            "CLIP-L under 10 MB"))
            rows.append(Row(NAME, f"rank-{rank} SDXL file vs full-weight SDXL file",
                            f"{fmt_bytes(sdxl['lowrank_bytes'])} vs {fmt_bytes(sdxl['full_bytes_computed'])}",
                            sdxl["lowrank_bytes"] / sdxl["full_bytes_computed"], "<= 0.02 (and < 40 MB)",
                            sdxl["lowrank_bytes"] <= 0.02 * sdxl["full_bytes_computed"]
                            and sdxl["lowrank_bytes"] < 40e6, "CLIP-L + bigG, float16 factors; full size computed"))
            del result
    return BenchResult(NAME, rows, raw)


if __name__ == "__main__":  # one mode's live-tensor peak split by category: python -m benchmarks.bench_lowrank --categories 8
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", type=int, metavar="RANK", required=True, help="0: full fine-tuning")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(profiled_align(args.categories, False, "cpu", args.steps, categories=True), indent=1))
