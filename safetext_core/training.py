"""One call from "encoders + prompts" to "a SafeText file with its figures and report".

Every front door (command line, ComfyUI node, A1111 tab) runs the same sequence: align, evaluate
on the held-out split, package the deltas with fingerprints, config, prompt hashes and figures,
save atomically, and draw the report.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .align import AlignConfig, AlignResult, ProgressEvent, Validator, _figures_from, align, apply_deltas
from .encoding import EncoderSet
from .prompt_sets import PromptSets
from .safetext_file import SafeTextFile


@dataclass
class Outcome:
    file: SafeTextFile
    result: AlignResult
    heldout: dict[str, float]
    heldout_cosines: dict[str, list[float]] = field(default_factory=dict)
    report: Any = None  # PIL image, when drawing is available
    path: Path | None = None


def evaluate_deltas(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], sets: dict[str, list[str]],
                    threshold: float = 0.5, strength: float = 1.0, device: torch.device | str = "cpu"
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Held-out embedding figures of ``deltas`` on ``sets`` and the per-prompt cosines behind them."""
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        raise ValueError("no prompts to evaluate on")
    device = torch.device(device)
    encoders.to(device)
    validator = Validator(encoders, sets, device, threshold)
    aligned = {name: apply_deltas(model, deltas.get(name, {}), strength).to(device) for name, model in encoders.models.items()}
    cos, l2 = validator.measure(aligned)
    figures = _figures_from(cos, l2, threshold)
    figures.update({f"{k}_count": float(len(v)) for k, v in sets.items()})
    return figures, {k: [float(x) for x in v] for k, v in cos.items()}


def render(outcome_history: list, validation: list, cosines: dict[str, list[float]], figures: dict[str, float],
           title: str, threshold: float) -> Any:
    try:
        from .plots import render_report
    except ImportError:  # drawing needs Pillow, which every host has; never fail a run over a picture
        return None
    shown = {k: v for k, v in figures.items() if not k.endswith("_count")}
    return render_report(outcome_history, validation, cosines, shown, title=title, threshold=threshold)


def run_alignment(encoders: EncoderSet, prompts: PromptSets, config: AlignConfig | None = None,
                  output: str | os.PathLike | None = None,
                  progress: Callable[[ProgressEvent], None] | None = None,
                  should_cancel: Callable[[], bool] | None = None, device: torch.device | str | None = None,
                  resume_path: str | os.PathLike | None = None, base_name: str = "",
                  strip_weighting: bool = False, draw: bool = True) -> Outcome:
    """Align, evaluate on held-out prompts, package, and (with ``output``) save atomically."""
    config = config or AlignConfig()
    fingerprints = encoders.fingerprints()  # of the originals, before anything else happens
    result = align(encoders, prompts, config, progress=progress, should_cancel=should_cancel, device=device,
                   resume_path=resume_path, strip_weighting=strip_weighting)
    if should_cancel is not None and should_cancel():
        from .align import AlignmentCancelled

        raise AlignmentCancelled(result.steps_run)
    heldout_sets = prompts.evaluation_sets("heldout")
    heldout, cosines = evaluate_deltas(encoders, result.deltas, heldout_sets, config.threshold,
                                       device=device or "cpu")
    best_validation = next((v for v in result.validation if v.get("step") == result.best_step), {})
    summary = {"steps_run": result.steps_run, "best_step": result.best_step, "stopped_early": result.stopped_early,
               "seconds": round(result.seconds, 1), "device": str(device or "cpu")}
    file = SafeTextFile(family=encoders.family, deltas=result.deltas, fingerprints=fingerprints,
                        config={**__import__("json").loads(config.to_json())}, prompt_hashes=result.prompt_hashes,
                        figures={"heldout": heldout, "validation": best_validation, "training": summary},
                        base_name=base_name or encoders.source)
    path = file.save(output) if output is not None else None
    report = render(result.history, result.validation, cosines, heldout,
                    f"SafeText: {base_name or encoders.source or encoders.family}", config.threshold) if draw else None
    return Outcome(file=file, result=result, heldout=heldout, heldout_cosines=cosines, report=report, path=path)
