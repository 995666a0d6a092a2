"""align_peak_memory: peak memory of aligning SD 1.5's CLIP-L, with no UNet or VAE in memory.

The alignment runs in a fresh child process that imports the engine, builds only CLIP-L and its
tokenizer, and calls the core's :func:`safetext_core.align` for a few steps (the optimiser state
exists from the first step on, so every later step has the steady-state footprint).

* CUDA: ``torch.cuda.max_memory_allocated`` over the alignment, and the allocator's reserved peak for
  reference. ``align`` keeps the original encoder where the caller has it (here the CPU) and the
  original's outputs for the training prompts in host memory; the host's peak is reported as well.
* CPU: the child's peak resident set (``VmHWM`` in /proc/self/status) minus its resident set right
  after the imports. The peak is reset (``/proc/self/clear_refs``) once the encoder is built, so
  building the random weights does not count; the encoder itself, already resident, does.

Peaks are kept per phase (forward+backward, optimiser step, packaging; the optimiser step is
bracketed by wrapping ``AdamW.step`` for measurement only) and reported over the training steps and
over the whole ``align`` call, which afterwards also copies the trained weights to the CPU and builds the
deltas while the trainee, its gradients and the optimiser are still alive.

The breakdown is an estimate from parameter counts (float32): trainable copy, gradients, AdamW's two
moments (and on the CPU also the original encoder and its stored outputs); the remainder of the
measured peak is activations and workspace.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .common import GIB, REPO_ROOT, BenchResult, Options, Row, fmt_bytes

NAME = "align_peak_memory"
TARGET_BYTES = 3 * GIB


# --------------------------------------------------------------------------------------- child side

def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMeter:
    """Peak memory per phase: the measurement is reset at each phase boundary and the segment peaks kept.

    GPU: ``max_memory_allocated`` with ``reset_peak_memory_stats``; CPU: ``VmHWM`` with a
    ``clear_refs`` reset (both are resettable high-water marks, so segment maxima add up exactly to
    the overall maximum).
    """

    def __init__(self, device: str):
        import torch

        self.torch, self.cuda = torch, device == "cuda"
        self.resettable = True
        self.segments: list[tuple[str, int]] = []

    def now(self) -> int:
        if self.cuda:
            return self.torch.cuda.memory_allocated()
        return _status_bytes("VmRSS")

    def reset(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        else:
            self.resettable = _reset_peak_rss() and self.resettable

    def close(self, phase: str) -> int:
        """End the current segment as ``phase``; return its peak and start the next segment."""
        if self.cuda:
            self.torch.cuda.synchronize()
            peak = self.torch.cuda.max_memory_allocated()
        else:
            peak = _status_bytes("VmHWM")
        self.segments.append((phase, peak))
        self.reset()
        return peak

    def peak(self, phases: tuple[str, ...] | None = None) -> int:
        return max((p for name, p in self.segments if phases is None or name in phases), default=0)


def child(device: str, quick: bool, steps: int, seed: int, batch_size: int) -> dict[str, Any]:
    import torch

    from safetext_core import AlignConfig, align
    from safetext_core.models import iter_named_trainable

    from .common import clip_l_encoder_set, prompt_sets

    if device == "cuda":
        torch.cuda.init()  # the CUDA context lives in host memory; count it in the baseline
    baseline_rss = _status_bytes("VmRSS")
    encoders = clip_l_encoder_set(quick, seed)
    prompts, source = prompt_sets()
    config = AlignConfig(steps=steps, batch_size=batch_size, eval_every=0, early_stop=False, seed=seed)
    model = encoders.models["clip_l"]
    params = sum(p.numel() for p in model.parameters())
    spec = encoders.spec("clip_l")
    from .bench_align import encoded_prompts

    train_prompts = encoded_prompts(config, prompts)
    # align encodes each prompt its steps will sample once: 77 positions x width x float32, per target layer.
    outputs_bytes = train_prompts * 77 * model.config.hidden_size * 4 * len(spec.targets)
    trainable = sum(p.numel() for _, p in iter_named_trainable(model, config.train or None, config.freeze))
    after_build_rss = _status_bytes("VmRSS")
    meter = PeakMeter(device)
    meter.reset()

    # Diagnostics only: close a measurement segment around AdamW's step, so the report can say whether
    # the peak comes from forward/backward or from the optimiser. The step itself is not changed.
    original_step = torch.optim.AdamW.step

    def measured_step(self: Any, *args: Any, **kwargs: Any) -> Any:
        meter.close("setup+forward+backward")
        out = original_step(self, *args, **kwargs)
        meter.close("optimizer")
        return out

    torch.optim.AdamW.step = measured_step
    try:
        align(encoders, prompts, config, device=device)
    finally:
        torch.optim.AdamW.step = original_step
    meter.close("packaging")
    out: dict[str, Any] = {
        "device": device, "steps": steps, "prompts": source, "batch_size": batch_size,
        "parameters": params, "trainable_parameters": trainable, "hwm_reset": meter.resettable,
        "train_prompts": train_prompts, "original_outputs_bytes": outputs_bytes,
        "baseline_rss": baseline_rss, "after_build_rss": after_build_rss, "segments": meter.segments,
        "train_peak": meter.peak(("setup+forward+backward", "optimizer")),
        "forward_backward_peak": meter.peak(("setup+forward+backward",)),
        "optimizer_peak": meter.peak(("optimizer",)), "call_peak": meter.peak(),
    }
    if device == "cuda":
        out["call_peak_reserved"] = torch.cuda.max_memory_reserved()
        out["host_rss_peak"] = _status_bytes("VmHWM")
    return out


# --------------------------------------------------------------------------------------- parent side

def run_child(opts: Options, steps: int, batch_size: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bench_memory", "--child", "--device", opts.device,
               "--steps", str(steps), "--seed", str(opts.seed), "--batch-size", str(batch_size)]
    command += ["--quick"] if opts.quick else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the memory child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def breakdown(params: int, trainable: int, outputs_bytes: int, cuda: bool) -> dict[str, int]:
    """float32 bytes of what alignment necessarily holds in the measured memory (AdamW keeps two
    moments per trained weight). On CUDA the original encoder and its stored outputs are host memory."""
    parts = {"trainable_copy": 4 * params, "gradients": 4 * trainable, "adamw_moments": 8 * trainable}
    if not cuda:
        parts = {"original_encoder": 4 * params, "original_outputs": outputs_bytes, **parts}
    return parts


def run(opts: Options) -> BenchResult:
    from safetext_core import AlignConfig

    steps = 3  # step 1 allocates the optimiser state; steps 2-3 are the steady state
    default_batch = AlignConfig().batch_size
    batches = [default_batch] + [b for b in opts.memory_batches if b != default_batch]
    cuda = opts.device == "cuda"
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for batch in batches:
        measured = run_child(opts, steps, batch)
        # CPU: everything is relative to the child's resident set right after its imports.
        base = 0 if cuda else measured["baseline_rss"]
        train, fwd, opt, call = (measured[k] - base for k in ("train_peak", "forward_backward_peak",
                                                              "optimizer_peak", "call_peak"))
        raw[f"batch_{batch}"] = {"child": measured, "train_peak_bytes": train, "call_peak_bytes": call}
        how = ("torch.cuda.max_memory_allocated in a child process" if cuda
               else "child's peak RSS (VmHWM) minus its RSS after imports")
        if not measured["hwm_reset"]:
            how += "; peak reset refused, so the encoder build is included"
        default = batch == default_batch
        suffix = "" if default else f" (batch {batch}, not default)"
        rows.append(Row(
            NAME + suffix, f"peak memory over the training steps (CLIP-L only, core `align`, batch {batch}+{batch}) vs 3 GiB",
            f"{fmt_bytes(train)}: forward+backward {fmt_bytes(fwd)}, optimizer step {fmt_bytes(opt)}",
            train / TARGET_BYTES, "< 1 (3 GiB)", train < TARGET_BYTES, f"{how}; {steps} steps, fp32"))
        if default:
            rows.append(Row(
                NAME + " (whole call)", "peak over the whole `align` call, incl. packaging the deltas, vs 3 GiB",
                f"{fmt_bytes(call)}" + (f"; host RSS peak {fmt_bytes(measured['host_rss_peak'] - measured['baseline_rss'])} "
                                        "above the child's baseline" if cuda else ""),
                call / TARGET_BYTES, "< 1 (3 GiB)", call < TARGET_BYTES,
                "packaging = CPU copies of the trained weights and the deltas, made while trainee, gradients and "
                "optimiser still exist" + ("; on CUDA they land in host memory" if cuda else "")))
            parts = breakdown(measured["parameters"], measured["trainable_parameters"],
                              measured["original_outputs_bytes"], cuda)
            estimate = sum(parts.values())
            listing = ", ".join(f"{k.replace('_', ' ')} {fmt_bytes(v)}" for k, v in parts.items())
            raw["breakdown_bytes"], raw["estimate_bytes"] = parts, estimate
            rows.append(Row(
                NAME + " (estimate)", "breakdown estimate (fp32 parameter counts) vs measured training peak",
                f"{listing}; sum {fmt_bytes(estimate)}; rest (activations, temporaries) {fmt_bytes(train - estimate)}",
                estimate / train if train else None, "-", None,
                f"{measured['parameters']:,} parameters, {measured['trainable_parameters']:,} trained "
                f"(position embedding frozen); original outputs of {measured['train_prompts']} training prompts "
                f"{fmt_bytes(measured['original_outputs_bytes'])}" + (" (host memory)" if cuda else "")))
    return BenchResult(NAME, rows, raw)


def _main() -> None:
    parser = argparse.ArgumentParser(description="memory child: align CLIP-L and print peak memory as JSON")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    print(json.dumps(child(args.device, args.quick, args.steps, args.seed, args.batch_size)))


if __name__ == "__main__":
    _main()
