"""checkpoint_writes: what resume checkpoints cost a training run, with and without the write-time budget.

A resume checkpoint holds every trained weight three or four times (weights, two AdamW moments and, once validation
kept a check, its weights), written and synced to disk: 1,408 MiB for CLIP-L without kept weights. Two real ``align`` runs on SD 1.5's CLIP-L (random weights, the shipped prompt
sets) side by side, a checkpoint due every step: ``checkpoint_share=1`` writes each one, the default (0.1) skips one
while the writes would take more than a tenth of the run. Reported: wall time of each run, checkpoints written, and
the median write. The budget matters most on a GPU, where 25 steps take less time than one write; on a CPU a step is
slow enough that the budget rarely skips one at the command line's interval of 25 steps.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from .common import SCRATCH_DIR, BenchResult, Options, Row, clip_l_encoder_set, fmt_seconds, median, prompt_sets

NAME = "checkpoint_writes"


def run(opts: Options) -> BenchResult:
    from safetext_core import AlignConfig, loop
    from safetext_core.loop import align

    encoders = clip_l_encoder_set(opts.quick)
    sets, source = prompt_sets()
    steps = 4 if opts.quick else 12
    base = AlignConfig(steps=steps, eval_every=0, mine_every=0, checkpoint_every=1, preserve_pool=64)
    SCRATCH_DIR.mkdir(parents=True, exist_ok=True)
    real_save = loop.save_resume
    raw: dict[str, Any] = {"steps": steps, "prompts": source, "runs": {}}
    try:
        for share in (1.0, base.checkpoint_share):
            spans: list[tuple[float, float]] = []  # (start, end) of each write
            sizes: list[int] = []

            def timed_save(path: Any, *args: Any, **kwargs: Any) -> None:
                begin = time.perf_counter()
                real_save(path, *args, **kwargs)
                spans.append((begin, time.perf_counter()))
                sizes.append(path.stat().st_size)

            loop.save_resume = timed_save
            resume = SCRATCH_DIR / f"checkpoint-bench-{share}.resume"
            stamps: list[float] = []

            def progress(event: Any) -> None:
                if event.phase == "train":
                    stamps.append(time.perf_counter())

            begin = time.perf_counter()
            align(encoders, sets, replace(base, checkpoint_share=share), device=opts.device, resume_path=resume,
                  progress=progress)
            wall = time.perf_counter() - begin
            # A step's time: from the first step's event to the last one's, less the writes that fall in between.
            between = sum(end - begin for begin, end in spans if begin >= stamps[0] and end <= stamps[-1])
            resume.unlink(missing_ok=True)
            raw["runs"][str(share)] = {"wall_s": wall, "writes": len(spans),
                                       "write_s": [end - begin for begin, end in spans], "bytes": max(sizes, default=0),
                                       "step_s": (stamps[-1] - stamps[0] - between) / (len(stamps) - 1)}
    finally:
        loop.save_resume = real_save
    every, budget = raw["runs"]["1.0"], raw["runs"][str(base.checkpoint_share)]
    write = median(every["write_s"])
    per_step = every["step_s"]
    rows = [
        Row(NAME, f"{steps}-step run, checkpoint due every step: budget {base.checkpoint_share} vs every one written",
            f"{fmt_seconds(budget['wall_s'])} ({budget['writes']} written) vs {fmt_seconds(every['wall_s'])} "
            f"({every['writes']} written)", budget["wall_s"] / every["wall_s"], "-", None,
            f"CLIP-L ({'quick: tiny' if opts.quick else 'full size'}), random weights, {source}; checkpoint "
            f"{every['bytes'] / 2 ** 20:.0f} MiB, median write {fmt_seconds(write)} (fsync included), "
            f"step {fmt_seconds(per_step)} without writes"),
        Row(NAME, "one checkpoint write vs 25 training steps (the command line's interval)",
            f"{fmt_seconds(write)} vs {fmt_seconds(25 * per_step)}", write / (25 * per_step), "-", None,
            "the same runs; without the budget a run spends write / (write + 25 steps) of its time on checkpoints"),
    ]
    return BenchResult(NAME, rows, raw)
