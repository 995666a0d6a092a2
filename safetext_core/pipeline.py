"""One call from "encoders + prompts" to "a SafeText file with its figures and report".

Every front door (command line, ComfyUI node, A1111 tab) runs the same sequence: align, evaluate
on the held-out split, package the deltas with fingerprints, config, prompt hashes and figures,
save atomically, and draw the report.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import AlignmentCancelled
from .evaluation import evaluate
from .loop import AlignConfig, AlignResult, ProgressEvent, align
from .encoding import EncoderSet
from .prompt_sets import PromptSets, independent_sets
from .safetext_file import SafeTextFile


@dataclass
class Outcome:
    file: SafeTextFile
    result: AlignResult
    heldout: dict[str, float]
    heldout_cosines: dict[str, list[float]] = field(default_factory=dict)
    report: Any = None  # PIL image, when drawing is available
    path: Path | None = None
    tradeoff: list[dict[str, float]] = field(default_factory=list)  # shares moved/collapsed per blend strength


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
                  strip_weighting: bool = False, draw: bool = True, independent: bool = True) -> Outcome:
    """Align, evaluate on held-out prompts, package, and (with ``output``) save atomically.

    The held-out figures cover the held-out split of the training sets and, with ``independent`` and the shipped
    sets in use, the independent evaluation sets (written apart from the training data, by topic).
    """
    config = config or AlignConfig()
    fingerprints = encoders.fingerprints()  # of the originals, before anything else happens
    result = align(encoders, prompts, config, progress=progress, should_cancel=should_cancel, device=device,
                   resume_path=resume_path, strip_weighting=strip_weighting)
    if should_cancel is not None and should_cancel():
        raise AlignmentCancelled(result.steps_run)
    heldout_sets = prompts.evaluation_sets("heldout")
    if independent and prompts.shipped_categories is not None:
        heldout_sets.update(independent_sets(prompts.shipped_categories))
    measured = evaluate(encoders, result.deltas, heldout_sets, config.threshold, device=device or "cpu")
    heldout, cosines = measured.figures, measured.cosines
    best_validation = next((v for v in result.validation if v.get("step") == result.best_step), {})
    summary = {"steps_run": result.steps_run, "best_step": result.best_step, "stopped_early": result.stopped_early,
               "seconds": round(result.seconds, 1), "device": str(device or "cpu")}
    file = SafeTextFile(family=encoders.family, deltas=result.deltas, fingerprints=fingerprints,
                        config=json.loads(config.to_json()), prompt_hashes=result.prompt_hashes,
                        figures={"heldout": heldout, "validation": best_validation, "training": summary,
                                 "tradeoff": measured.tradeoff},
                        base_name=base_name or encoders.source, factors=result.factors)
    path = file.save(output) if output is not None else None
    report = render(result.history, result.validation, cosines, heldout,
                    f"SafeText: {base_name or encoders.source or encoders.family}", config.threshold) if draw else None
    return Outcome(file=file, result=result, heldout=heldout, heldout_cosines=cosines, report=report, path=path,
                   tradeoff=measured.tradeoff)
