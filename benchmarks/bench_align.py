"""align_step_vs_esd: one SafeText alignment step against one ESD fine-tuning step, on SD 1.5.

SafeText side: the core's own training loop (:func:`safetext_core.align`) on SD 1.5's CLIP-L with its
default configuration (16 unsafe + 16 safe prompts per step, last and penultimate layer, AdamW). A
step is timed from one progress event to the next, so setup (copying the encoder, the anchor,
tokeniser warm-up) is excluded and everything the loop does per step (sampling, tokenising, the
frozen and trainable passes, backward, clipping, the optimiser) is included.

ESD side (Gandikota et al. 2023), the step as its training script runs it on SD 1.5: two noise
predictions of the frozen UNet (conditioned on the concept, and unconditioned), one forward of the
trainable UNet on the same 64x64 latent (512x512 pixels, batch 1), the negative-guidance MSE loss,
backward and an Adam step. The real ESD loop also samples x_t with the trainable model for a random
number of DDIM steps (about 25 classifier-free-guided steps on average) before each such step; that
is left out here, so the ESD time is a lower bound and the ratio errs in ESD's favour.

Default ESD variant: ``noxattn`` (ESD-u, all UNet parameters except cross-attention, time embedding
and output layers; ESD's choice for nudity). ``xattn`` (ESD-x) and ``full`` can be added with
``--esd-methods``. Both sides run in float32 with PyTorch's default precision settings.
"""
from __future__ import annotations

import copy
import gc
import time
from typing import Any

import torch

from .common import (BenchResult, Options, Row, build_unet, clip_l_encoder_set, fmt_bytes, fmt_seconds, median,
                     parameter_count, prompt_sets, synchronize, time_call)

NAME = "align_step_vs_esd"
TARGET = 0.15
ESD_ITERATIONS = 1000  # ESD's default number of training iterations (train-esd.py --iterations)


def safetext_step_times(opts: Options) -> tuple[list[float], dict[str, Any]]:
    """Per-step seconds of the core's real training loop (after ``opts.warmup`` uncounted steps)."""
    from safetext_core import AlignConfig, align

    encoders = clip_l_encoder_set(opts.quick, opts.seed)
    prompts, source = prompt_sets()
    config = AlignConfig(steps=opts.warmup + opts.repeats + 1, eval_every=0, early_stop=False, seed=opts.seed)
    stamps: list[float] = []

    def progress(event: Any) -> None:
        if event.phase == "train":
            synchronize(opts.device)  # the loop already syncs through float(loss); this makes it explicit
            stamps.append(time.perf_counter())

    result = align(encoders, prompts, config, progress=progress, device=opts.device)
    # Step k's time is the gap between events k-1 and k; the first step has no previous event.
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    model = encoders.models["clip_l"]
    info = {"prompts": source, "batch_size": config.batch_size, "targets": "h-1+ln, h-2+ln (weight 0.5)",
            "parameters": parameter_count(model), "changed_parameters": sum(d.numel() for d in result.deltas["clip_l"].values()),
            "config": config.to_json(), "all_intervals_s": intervals}
    del encoders, result
    return intervals[opts.warmup:], info


def esd_trainable(unet: torch.nn.Module, method: str) -> list[torch.nn.Parameter]:
    """ESD's parameter selection (train-esd.py), in diffusers' parameter names."""
    chosen = []
    for name, param in unet.named_parameters():
        if method == "noxattn":  # ESD-u: everything but cross-attention, time embedding and output layers
            keep = not (name.startswith(("conv_out.", "conv_norm_out.")) or "attn2" in name or "time_embed" in name)
        elif method == "xattn":  # ESD-x: cross-attention only
            keep = "attn2" in name
        elif method == "full":
            keep = True
        else:
            raise ValueError(f"unknown ESD method {method!r} (noxattn, xattn, full)")
        if keep:
            chosen.append(param)
    return chosen


class NotEnoughMemory(RuntimeError):
    """The machine lacks the free memory for this ESD variant; skipped rather than risking the OOM killer."""


def mem_available() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def esd_step_times(opts: Options, method: str) -> tuple[list[float], dict[str, Any]]:
    """Per-step seconds of an ESD training step on SD 1.5's UNet at 64x64 latents, batch 1."""
    device = opts.torch_device
    unet = build_unet(opts.quick, opts.seed).to(device).train()
    if device.type == "cpu":
        # On a shared CPU machine, check before allocating gradients and Adam state: weights are
        # resident already; gradients 4 B and Adam 8 B per trained weight, activations ~3 GB at 64x64.
        trained = sum(p.numel() for p in esd_trainable(unet, method))
        need = 12 * trained + (0 if opts.quick else 3 * 1024 ** 3)
        free = mem_available()
        if free is not None and need > 0.9 * free:
            del unet
            gc.collect()
            raise NotEnoughMemory(f"ESD {method} needs about {fmt_bytes(need)} more; {fmt_bytes(free)} available")
    # A separate frozen copy on the GPU, as ESD keeps one. On CPU the frozen predictions reuse the
    # same weights under no_grad: identical arithmetic, and it saves 3.4 GB that a 24 GB machine lacks.
    frozen_copy = device.type == "cuda"
    frozen = copy.deepcopy(unet).eval().requires_grad_(False) if frozen_copy else unet
    unet.requires_grad_(False)
    params = esd_trainable(unet, method)
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=1e-5)
    size = unet.config.sample_size
    width = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(opts.seed)
    concept = torch.randn(1, 77, width, generator=generator).to(device)  # E("nudity"), precomputed as ESD does
    empty = torch.randn(1, 77, width, generator=generator).to(device)    # E("")
    eta = 1.0  # negative guidance

    def step() -> None:
        x_t = torch.randn(1, 4, size, size, device=device)
        t = torch.randint(0, 1000, (1,), device=device)
        with torch.no_grad():
            e_0 = frozen(x_t, t, encoder_hidden_states=empty).sample
            e_p = frozen(x_t, t, encoder_hidden_states=concept).sample
        e_n = unet(x_t, t, encoder_hidden_states=concept).sample
        loss = torch.nn.functional.mse_loss(e_n, e_0 - eta * (e_p - e_0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = time_call(step, device, opts.warmup, opts.repeats)
    info = {"method": method, "latent": f"1x4x{size}x{size}", "unet_parameters": parameter_count(unet),
            "trainable_parameters": sum(p.numel() for p in params), "frozen_copy": frozen_copy}
    if device.type == "cuda":
        info["peak_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return times, info  # the models go with this frame; the caller collects


def run(opts: Options) -> BenchResult:
    raw: dict[str, Any] = {}
    align_times, align_info = safetext_step_times(opts)
    gc.collect()
    if opts.device == "cuda":
        torch.cuda.empty_cache()
    a = median(align_times)
    raw["safetext"] = {"step_s": align_times, "median_s": a, **align_info}
    precision = "fp32, PyTorch default precision settings"
    conditions_base = f"{precision}; warm-up {opts.warmup}, median of {opts.repeats}"
    rows: list[Row] = []
    for method in opts.esd_methods:
        label = {"noxattn": "ESD-u", "xattn": "ESD-x", "full": "ESD-full"}[method]
        try:
            esd_times, esd_info = esd_step_times(opts, method)
        except NotEnoughMemory as why:
            rows.append(Row(NAME, f"SafeText align step vs {label} step", f"{fmt_seconds(a)} vs (skipped: {why})",
                            None, f"<= {TARGET}", None, conditions_base, verdict="SKIPPED"))
            continue
        gc.collect()
        if opts.device == "cuda":
            torch.cuda.empty_cache()
        e = median(esd_times)
        raw[f"esd_{method}"] = {"step_s": esd_times, "median_s": e, **esd_info}
        ratio = a / e
        extra = f"; ESD peak {fmt_bytes(esd_info['peak_allocated_bytes'])}" if "peak_allocated_bytes" in esd_info else ""
        rows.append(Row(
            benchmark=NAME,
            compared=(f"SafeText align step (CLIP-L, {align_info['batch_size']}+{align_info['batch_size']} prompts, "
                      f"core `align`) vs {label} step (SD 1.5 UNet, 2 frozen + 1 trained pass, 64x64 latent, Adam)"),
            measured=f"{fmt_seconds(a)} vs {fmt_seconds(e)}{extra}",
            ratio=ratio, target=f"<= {TARGET}", passed=ratio <= TARGET,
            conditions=conditions_base + ("" if esd_info["frozen_copy"] else "; ESD frozen passes share the trained weights (CPU memory)")
            + "; ESD's x_t sampling not counted (ESD lower bound)"))
        if not any(r.benchmark.endswith("(derived)") for r in rows):
            steps = 300  # AlignConfig().steps: SafeText's default run length
            whole = steps * a / (ESD_ITERATIONS * e)
            rows.append(Row(
                benchmark=NAME + " (derived)",
                compared=f"whole default run: SafeText {steps} steps vs {label} {ESD_ITERATIONS} iterations",
                measured=f"{fmt_seconds(steps * a)} vs {fmt_seconds(ESD_ITERATIONS * e)} (from the step medians above)",
                ratio=whole, target="-", passed=None,
                conditions="step counts are the two methods' defaults, not measured; early stopping can end SafeText sooner"))
    return BenchResult(NAME, rows, raw)
