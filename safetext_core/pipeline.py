"""One call from "encoders + prompts" to "a SafeText file with its figures and report".

Every front door (command line, ComfyUI node, A1111 tab) runs the same sequence: check that the output can
be written (before any training), align, evaluate on the held-out split, package the deltas with
fingerprints, config, prompt hashes and figures, save atomically, and draw the report. The resume
checkpoint is removed only once the file is in place (docs/reliability.md, "Crash-safe training").
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .distributed import Processes
from .errors import AlignmentCancelled, OutputError
from .evaluation import evaluate
from .loop import AlignConfig, AlignResult, ProgressEvent, align
from .memory import memory_plan
from .models import iter_named_trainable
from .outputs import SPARE_BYTES, crash_point, preflight
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
                  strip_weighting: bool = False, draw: bool = True, independent: bool = True,
                  overwrite: bool = False, side_outputs: Sequence[str | os.PathLike] = (),
                  fresh: bool = False, processes: Processes | None = None) -> Outcome:
    """Align, evaluate on held-out prompts, package, and (with ``output``) save atomically.

    With ``output``, :func:`~safetext_core.outputs.preflight` checks it before any training (an existing file is
    refused unless ``overwrite``; ``side_outputs``: other files the caller will write next to it, such as the
    report); an :class:`~safetext_core.errors.OutputError` says what is wrong. ``fresh``: discard an existing
    resume checkpoint at ``resume_path`` (after the check) instead of continuing from it.

    ``processes``: the processes of ``accelerate launch`` (:mod:`safetext_core.distributed`); every one of them
    calls this and trains its share, the main process alone checks, evaluates, saves and draws. The others return
    an outcome without held-out figures, report or path as soon as training is over.

    The held-out figures cover the held-out split of the training sets and, with ``independent`` and the shipped
    sets in use, the independent evaluation sets (written apart from the training data, by topic).
    """
    config = config or AlignConfig()
    processes = processes or Processes()
    resume = Path(resume_path) if resume_path else None
    if output is not None:
        output = SafeTextFile.output_path(output)
    if output is not None and processes.is_main:
        checkpointing = resume is not None and config.checkpoint_every > 0
        derived = [resume] if checkpointing else []
        preflight(output, _space_needed(encoders, config, resume if checkpointing else None), overwrite,
                  derived + [Path(p) for p in side_outputs])
    if fresh and resume is not None and processes.is_main and resume.is_file():
        resume.unlink()
    processes.barrier()  # every process decides whether to resume after the main one has checked and cleaned
    fingerprints = encoders.fingerprints()  # of the originals, before anything else happens
    result = align(encoders, prompts, config, progress=progress, should_cancel=should_cancel, device=device,
                   resume_path=resume_path, strip_weighting=strip_weighting, remove_resume=output is None,
                   processes=processes)
    crash_point("trained")  # the fault suite's kill right after training (a no-op unless it asks)
    if not processes.is_main:  # the main process evaluates, saves and draws; nothing here is needed elsewhere
        return Outcome(file=SafeTextFile(family=encoders.family, deltas=result.deltas, fingerprints=fingerprints,
                                         config=json.loads(config.to_json()), prompt_hashes=result.prompt_hashes,
                                         factors=result.factors),
                       result=result, heldout={})
    if should_cancel is not None and should_cancel():  # the finished run's checkpoint (if any) is kept
        raise AlignmentCancelled(result.steps_run, str(resume) if resume is not None and resume.is_file() else None)
    heldout_sets = prompts.evaluation_sets("heldout")
    if strip_weighting:  # held-out prompts are measured as training saw its own (align checked them the same way)
        from .encoding import strip_weighting_syntax

        heldout_sets = {k: [strip_weighting_syntax(p) for p in v] for k, v in heldout_sets.items()}
    if independent and prompts.shipped_categories is not None:
        heldout_sets.update(independent_sets(prompts.shipped_categories))
    # The held-out pass in the precision training used (a 4B encoder: bfloat16 on the GPU, memory.py).
    plans = [memory_plan(config, spec.arch, device or "cpu")[0] for spec in encoders.profile.encoders]
    measured = evaluate(encoders, result.deltas, heldout_sets, config.threshold, device=device or "cpu",
                        dtype=min(plans, key=lambda d: torch.finfo(d).bits))
    heldout, cosines = measured.figures, measured.cosines
    best_validation = next((v for v in result.validation if v.get("step") == result.best_step), {})
    summary = {"steps_run": result.steps_run, "best_step": result.best_step, "stopped_early": result.stopped_early,
               "seconds": round(result.seconds, 1), "device": str(device or "cpu")}
    file = SafeTextFile(family=encoders.family, deltas=result.deltas, fingerprints=fingerprints,
                        config=json.loads(config.to_json()), prompt_hashes=result.prompt_hashes,
                        figures={"heldout": heldout, "validation": best_validation, "training": summary,
                                 "tradeoff": measured.tradeoff},
                        base_name=base_name or encoders.source, factors=result.factors)
    try:
        path = file.save(output) if output is not None else None
    except OutputError as error:
        if resume is None or not resume.is_file():
            raise
        raise OutputError(f"{error}; the trained run is kept in {resume}: fix that and run again with --resume "
                          "(resume_path=...) to write the file without training again") from error
    if path is not None and resume is not None and resume.is_file():
        resume.unlink()  # only now: until the file is in place, the checkpoint is the run
    report = render(result.history, result.validation, cosines, heldout,
                    f"SafeText: {base_name or encoders.source or encoders.family}", config.threshold) if draw else None
    return Outcome(file=file, result=result, heldout=heldout, heldout_cosines=cosines, report=report, path=path,
                   tradeoff=measured.tradeoff)


def _space_needed(encoders: EncoderSet, config: AlignConfig, resume: Path | None) -> int:
    """Bytes a run needs free next to its output at its largest moment: the file (float32 differences of every
    trained weight: an upper bound, a low-rank file is smaller) and, when checkpointing, the resume checkpoint
    (weights, two AdamW moments and the best weights: 4x) twice while a new one replaces the old."""
    trained = sum(p.numel() for model in encoders.models.values()
                  for _, p in iter_named_trainable(model, config.train or None, config.freeze))
    file = 4 * trained
    if resume is None:
        return file + SPARE_BYTES
    checkpoint = 16 * trained + 400 * config.steps  # + the history's JSON
    existing = resume.stat().st_size if resume.is_file() else 0
    return max(file + checkpoint, 2 * checkpoint) - existing + SPARE_BYTES
