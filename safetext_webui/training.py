"""Training a SafeText file for the checkpoint the webui has loaded (the tab and ``POST /safetext/v1/train``).

The encoder weights are copied from the loaded model (the Lora extension's backups in place of patched
weights, see :mod:`.hijack`), so the model is never touched. Callers hold the webui's queue lock, so training
and generation never run at once; progress goes to ``shared.state`` and :data:`STATUS`, and the webui's
Interrupt stops it without writing a file. On Forge and Forge Neo the weights come from their CLIP object with
the patchers' backups in place of patched weights (:func:`.forge.training_states`).
"""
from __future__ import annotations

import re
import time
from typing import Any

import torch
from modules import shared

import safetext_core as core
from safetext_core.errors import ConfigError
from safetext_core.hosting import SUFFIX, new_file_path
from safetext_core.tokenizer import load_clip_tokenizer

from . import files, forge
from .hijack import HostEncoder, host_encoders, original_state
from .settings import models_dir

FIELDS = ("categories", "unsafe_prompts", "safe_prompts", "replace", "steps", "learning_rate", "lam", "batch_size",
          "name", "seed", "rank", "lora_alpha", "lora_learning_rate", "lora_targets", "lr_schedule", "lowrank_method")
STATUS: dict[str, Any] = {"running": False, "step": 0, "total": 0, "phase": "idle", "message": "", "loss": None,
                          "figures": {}, "error": None, "file": None, "finished": None, "started": None}


def lines(text: Any) -> list[str]:
    """Prompts from a list or from text with one prompt per line: the core's rule (a non-text item, or one empty
    once cleaned, is a PromptError naming it)."""
    from safetext_core.prompt_sets import prompt_list

    return prompt_list(text, "prompts")


def checkpoint_title(sd_model: Any) -> str:
    info = getattr(sd_model, "sd_checkpoint_info", None)
    return str(getattr(info, "model_name", None) or getattr(info, "title", None) or "checkpoint")


def default_output_name(sd_model: Any) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in checkpoint_title(sd_model))
    return f"{stem}-safetext{SUFFIX}"


def _tokenizers(family: str, encs: list[HostEncoder]) -> dict[str, Any]:
    out = {}
    for enc in encs:
        tokenizer = getattr(enc.module.wrapped, "tokenizer", None) if enc.kind == "hf" else None
        if tokenizer is None or not hasattr(tokenizer, "pad_token"):
            tokenizer = load_clip_tokenizer(pad_token=core.get_family(family).encoder(enc.name).pad_token)
        out[enc.name] = tokenizer
    return out


def _config(steps: Any, learning_rate: Any, lam: Any, batch_size: Any, seed: Any, rank: Any = 0,
            lora_alpha: Any = 0.0, lora_learning_rate: Any = None, lora_targets: Any = "",
            lr_schedule: Any = None, lowrank_method: Any = None) -> core.AlignConfig:
    """An AlignConfig from the tab's or the API's values; a value left out (None or '') keeps the core's default."""
    given = {"steps": (steps, int), "batch_size": (batch_size, int), "learning_rate": (learning_rate, float),
             "lam": (lam, float), "seed": (seed, int), "rank": (rank, int), "lora_alpha": (lora_alpha, float),
             "lora_learning_rate": (lora_learning_rate, float), "lr_schedule": (lr_schedule, str),
             "lowrank_method": (lowrank_method, str)}
    try:
        values = {name: kind(value) for name, (value, kind) in given.items() if value not in (None, "")}
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad training settings: {error}") from None
    pattern = str(lora_targets or "").strip()
    if pattern:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"LoRA target layers: not a regular expression ({error})") from None
        values["lora_targets"] = (pattern,)
    return core.AlignConfig(**values)


def _device() -> Any:
    try:
        from modules import devices
    except ImportError:
        return "cpu"
    return getattr(devices, "device", "cpu")


def train(categories: Any = None, unsafe_prompts: Any = "", safe_prompts: Any = "", replace: bool = False,
          steps: Any = None, learning_rate: Any = None, lam: Any = None, batch_size: Any = None, name: Any = "",
          seed: Any = None, overwrite: bool = False, rank: Any = None, lora_alpha: Any = None,
          lora_learning_rate: Any = None,
          lora_targets: Any = "", lr_schedule: Any = None, lowrank_method: Any = None) -> dict[str, Any]:
    """Train a SafeText file for the loaded checkpoint; returns its name, fingerprint, figures and report.

    Call with the webui's queue lock held. Raises :class:`~safetext_core.errors.SafeTextError` for bad values
    (:class:`~safetext_core.errors.AlignmentCancelled` when interrupted; no file is written then).
    """
    sd_model = shared.sd_model
    if not forge.is_forge(sd_model) and files.loaded_model() is None:  # Forge's placeholder before its first job
        forge.load_checkpoint(queue_held=True)
        sd_model = files.loaded_model() or sd_model
    config = _config(steps, learning_rate, lam, batch_size, seed, rank, lora_alpha, lora_learning_rate, lora_targets,
                     lr_schedule, lowrank_method)
    folder = models_dir()
    target = new_file_path(folder, name if str(name or "").strip() else default_output_name(sd_model))
    if target.exists() and not overwrite:
        raise ConfigError(f"{target.name} already exists in {folder}; choose another name")
    # Prompts are checked before any weight is copied: a bad one is a PromptError naming it.
    prompts = core.load_prompt_sets([c for c in (categories or []) if c], unsafe_prompts=unsafe_prompts,
                                    safe_prompts=safe_prompts, replace=bool(replace))
    prompts.validate()
    if forge.is_forge(sd_model):  # the tokenizers are CLIP's own, built offline by the core
        family, states = forge.training_states(sd_model)
        tokenizers = None
    else:
        family, encs = host_encoders(sd_model)
        states = {enc.name: {k: v.detach().to("cpu", torch.float32) for k, v in original_state(enc).items()}
                  for enc in encs}
        tokenizers = _tokenizers(family, encs)
    encoders = core.encoders_from_state_dicts(family, states, tokenizers, source=checkpoint_title(sd_model))
    del states
    state = shared.state
    state.job, state.job_count, state.sampling_steps = "SafeText training", 1, config.steps
    STATUS.update(running=True, step=0, total=config.steps, phase="train", message="starting", loss=None, figures={},
                  error=None, file=None, started=time.time(), finished=None)

    def progress(event: Any) -> None:
        STATUS.update(step=int(event.step), total=int(event.total), phase=event.phase, loss=event.loss,
                      message=event.message or f"{event.phase} step {event.step}/{event.total}")
        if event.figures:
            STATUS["figures"] = dict(event.figures)
        state.sampling_step, state.sampling_steps, state.textinfo = int(event.step), int(event.total), STATUS["message"]

    try:
        with torch.inference_mode(False), torch.enable_grad():
            outcome = core.run_alignment(encoders, prompts, config, output=target, progress=progress,
                                         should_cancel=lambda: bool(state.interrupted), device=_device(),
                                         base_name=checkpoint_title(sd_model), strip_weighting=True,
                                         overwrite=bool(overwrite))
    except core.AlignmentCancelled:
        STATUS.update(running=False, phase="interrupted", message="interrupted: no file written", finished=time.time())
        raise
    except Exception as error:  # recorded for the status route, then raised as it was
        STATUS.update(running=False, phase="error", error=str(error), message=f"error: {error}", finished=time.time())
        raise
    finally:
        encoders.to("cpu")
    figures = {k: float(v) for k, v in (outcome.heldout or {}).items() if isinstance(v, (int, float))}
    STATUS.update(running=False, phase="done", figures=figures, file=target.name, finished=time.time(),
                  message=f"done: {target.name}")
    return {"file": target.name, "fingerprint": outcome.file.short_fingerprint(), "family": family,
            "figures": figures, "steps_run": outcome.result.steps_run, "report": outcome.report,
            "rank": config.rank, "bytes": target.stat().st_size}
