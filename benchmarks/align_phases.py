"""Where a default alignment run's time goes: the real MiniLM and the shipped sets, phase by phase.

A short run of the default configuration (``--steps``, 50 by default, with validation and mining every 25 steps
as in a full run) is timed from the loop's own progress events: setup (copying the encoder, checking and
encoding the training prompts once), a training step (median), a validation pass, a mining round (the gap after
a mining step less a median step) and the final evaluation on the held-out and independent sets. From these the
time of a run of the current defaults (450 steps: 18 validations, 17 minings) is estimated. Wall and CPU seconds
(all threads of the process) are both given: on a shared machine the wall time depends on the other jobs, the CPU
time much less.

Usage, from the repository root (under ``flock /tmp/safetext-heavy.lock`` on the shared machine)::

    python -m benchmarks.align_phases --label after [--steps 50] [--set mine_sample=1024]
    python -m benchmarks.align_phases --label before --code /path/to/an/older/checkout

``--code`` imports ``safetext_core`` from another checkout (e.g. ``git archive <commit>`` unpacked), so the same
script measures the code before and after a change. Each run adds or replaces its row (by label) in
``benchmarks/results/align-phases-<device-tag>.json`` and rewrites the ``.md`` table next to it.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(steps: int, overrides: dict[str, str]) -> dict[str, Any]:
    from safetext_core import AlignConfig, load_encoders, load_prompt_sets
    from safetext_core import loop
    from safetext_core.evaluation import evaluate
    from safetext_core.prompt_sets import independent_sets

    defaults = AlignConfig()
    config = AlignConfig(steps=steps, early_stop=False,
                         **{k: type(getattr(defaults, k))(v) for k, v in overrides.items()})
    encoders, prompts = load_encoders(None), load_prompt_sets()
    events: list[tuple[float, float, str, int]] = []
    started, started_cpu = time.perf_counter(), cpu_seconds()
    result = loop.align(encoders, prompts, config,
                        progress=lambda e: events.append((time.perf_counter(), cpu_seconds(), e.phase, e.step)))
    gaps: dict[tuple[str, int], tuple[float, float]] = {}
    previous = (started, started_cpu)
    for wall, cpu, phase, step in events:
        gaps[(phase, step)] = (wall - previous[0], cpu - previous[1])
        previous = (wall, cpu)
    every = config.eval_every
    plain = [s for s in range(2, steps + 1) if (s - 1) % config.mine_every != 0] if config.mine_every else range(2, steps + 1)
    figures: dict[str, dict[str, float]] = {}
    for which, kind in ((0, "wall"), (1, "cpu")):
        step = statistics.median(gaps[("train", s)][which] for s in plain)
        minings = [gaps[("train", s)][which] - step for s in range(config.mine_every + 1, steps + 1, config.mine_every)] \
            if config.mine_every else []
        figures[kind] = {"setup": gaps[("train", 1)][which] - step, "step": step,
                         "validation": statistics.mean(gaps[("eval", s)][which] for s in range(every, steps + 1, every)),
                         "mining": statistics.mean(minings) if minings else 0.0}
    sets = prompts.evaluation_sets("heldout")
    sets.update(independent_sets(prompts.shipped_categories))
    wall, cpu = time.perf_counter(), cpu_seconds()
    evaluate(encoders, result.deltas, sets)
    figures["wall"]["final_evaluation"] = time.perf_counter() - wall
    figures["cpu"]["final_evaluation"] = cpu_seconds() - cpu
    full = AlignConfig()
    validations = full.steps // full.eval_every if full.eval_every else 0
    minings = (full.steps - 1) // full.mine_every if full.mine_every else 0
    for kind in ("wall", "cpu"):
        f = figures[kind]
        f["default_run_estimate"] = (f["setup"] + full.steps * f["step"] + validations * f["validation"]
                                     + minings * f["mining"] + f["final_evaluation"])
    import torch

    return {"figures": figures, "steps": steps, "overrides": overrides, "torch_threads": torch.get_num_threads(),
            "loadavg_end": list(os.getloadavg()), "mining_per_run": minings, "validations_per_run": validations,
            "steps_per_run": full.steps}


def table(rows: dict[str, Any]) -> str:
    head = ("| label | code | settings | setup | step | validation | mining round | final evaluation | "
            "default run (estimate) | threads, load |\n|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for label, row in rows.items():
        w, c = row["figures"]["wall"], row["figures"]["cpu"]
        cell = lambda k: f"{w[k]:.2f} s ({c[k]:.2f} s CPU)"
        settings = ", ".join(f"{k}={v}" for k, v in row["overrides"].items()) or "defaults"
        lines.append(f"| {label} | {row['code']} | {settings} | {cell('setup')} | {cell('step')} | {cell('validation')} | "
                     f"{cell('mining')} | {cell('final_evaluation')} | **{w['default_run_estimate'] / 60:.1f} min** "
                     f"({c['default_run_estimate'] / 60:.1f} min CPU; {row.get('steps_per_run', 300)} steps) | "
                     f"{row['torch_threads']}, "
                     f"{row['loadavg_end'][0]:.1f} |")
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.align_phases", description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="an AlignConfig field")
    parser.add_argument("--code", help="import safetext_core from this checkout instead of this one")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    import safetext_core

    overrides = dict(item.split("=", 1) for item in args.set)
    row = measure(args.steps, overrides)
    row["code"] = Path(safetext_core.__file__).resolve().parent.parent.name if args.code else "this checkout"
    row["command"] = "python -m benchmarks.align_phases " + " ".join(argv if argv is not None else sys.argv[1:])
    row["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    from benchmarks.common import device_tag

    stem = f"align-phases-{device_tag('cpu', False)}"
    path = args.out_dir / f"{stem}.json"
    rows = json.loads(path.read_text()) if path.is_file() else {}
    rows[args.label] = row
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(
        "# Where a default alignment run's time goes (real MiniLM, shipped sets)\n\n"
        "Written by `python -m benchmarks.align_phases` (see its docstring); wall seconds, and in brackets the "
        "process's CPU seconds over all its threads.\n\n" + table(rows) + "\n## Commands\n\n"
        + "\n".join(f"- {label}: `{r['command']}` at {r['finished']}" for label, r in rows.items()) + "\n")
    print(table({args.label: row}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
