"""Resume checkpoints of a training run: trained weights, optimiser state, history and best weights.

Written atomically (:func:`outputs.atomic_write`: a hidden partial file renamed into place, so a kill
mid-write keeps the previous checkpoint whole); read back only into a run with the same settings and prompt
sets, through safetensors (never pickle). A damaged or foreign checkpoint is a :class:`ResumeError` naming it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ResumeError

if TYPE_CHECKING:
    from .loop import AlignConfig


# Settings added after SafeText files and resume checkpoints first recorded their config, at the value one without the
# key was trained with (not today's default): those terms off, a constant rate, low-rank runs trained adapters. The one
# table for resuming (here) and for a host's "same training, reuse the file" check (hosting.same_training).
LEGACY_VALUES = {"pair_share": 0.0, "mine_every": 0, "preserve_share": 0.0, "mine_sample": 0, "lr_schedule": "constant",
                 "safe_cos_weight": 0.0, "safe_cos_per_token": False, "lowrank_method": "adapters"}


def save_resume(path: Path, step: int, config: AlignConfig, hashes: dict[str, str], history: list,
                 validation: list, trainees: dict[str, list[tuple[str, nn.Parameter]]],
                 optimizer: torch.optim.Optimizer, best: dict[str, dict[str, torch.Tensor]] | None, best_step: int,
                 loop_state: dict | None = None) -> None:
    """Write the checkpoint of a run at ``step``; ``loop_state``: the loop's own JSON state (mined prompts)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for encoder, params in trainees.items():
        for name, param in params:
            tensors[f"param/{encoder}/{name}"] = param.detach().cpu().contiguous()
            state = optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    tensors[f"adam/{encoder}/{name}/{key}"] = state[key].detach().cpu().contiguous()
            if "step" in state:
                tensors[f"adamstep/{encoder}/{name}"] = torch.as_tensor(state["step"], dtype=torch.float64).reshape(1).cpu()
    for encoder, params in (best or {}).items():
        for name, value in params.items():
            tensors[f"best/{encoder}/{name}"] = value.contiguous()
    meta = {"step": str(step), "config": config.to_json(), "hashes": json.dumps(hashes),
            "history": json.dumps(history), "validation": json.dumps(validation), "best_step": str(best_step),
            "state": json.dumps(loop_state or {})}
    from .outputs import atomic_write

    atomic_write(path, lambda partial: save_file(tensors, partial, metadata=meta), what="resume checkpoint",
                 crash=("checkpoint-write", step))


def load_resume(path: Path, config: AlignConfig, hashes: dict[str, str],
                expected: dict[str, tuple[int, ...]] | None = None
                ) -> tuple[int, dict[str, torch.Tensor], list, list, int, dict]:
    """Read a checkpoint made by :func:`save_resume` for this run: (step, tensors, history, validation,
    best step, loop state). ``expected``: ``{"param/<encoder>/<name>": shape}`` of the parameters being trained;
    each must be in the checkpoint with that shape. Anything unreadable or inconsistent is a :class:`ResumeError`.
    """
    from safetensors import safe_open

    def damaged(why: str) -> ResumeError:
        return ResumeError(f"the resume checkpoint {path} is damaged ({why}); delete it to start over, "
                           "or run without --resume")

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            saved = json.loads(meta.get("config", "{}"))
            ours = json.loads(config.to_json())
            if not isinstance(saved, dict):
                raise damaged("its config is not a JSON object")
            # A setting the checkpoint's version did not have yet was at its default then (base_dtype: float32 on
            # every device, which "auto" still is on a CPU); checkpointing changes memory, not one gradient.
            # A term added later was off in those versions, whatever its default is now.
            defaults = {**json.loads(type(config)(rank=config.rank).to_json()), **LEGACY_VALUES}
            ignored = {"steps", "checkpoint_every", "checkpoint_share", "eval_every", "gradient_checkpointing"}
            if not config.rank:  # how factors are made means nothing to a full-weight run
                ignored.add("lowrank_method")
            differing = sorted(k for k in ours if k not in ignored and saved.get(k, defaults[k]) != ours[k])
            if differing:
                raise ResumeError(f"cannot resume from {path}: it was made with other settings ({', '.join(differing)})")
            if json.loads(meta.get("hashes", "{}")) != hashes:
                raise ResumeError(f"cannot resume from {path}: it was made with other prompt sets")
            for key, shape in (expected or {}).items():
                if key not in names:
                    raise damaged(f"{key} is missing")
                found = tuple(f.get_slice(key).get_shape())
                if found != tuple(shape):
                    raise damaged(f"{key} has shape {found}, the model's is {tuple(shape)}")
            tensors = {k: f.get_tensor(k) for k in names}
            step = int(meta["step"])
            history, validation = json.loads(meta["history"]), json.loads(meta["validation"])
            best_step, state = int(meta.get("best_step", -1)), json.loads(meta.get("state", "{}"))
    except ResumeError:
        raise
    except Exception as error:  # safetensors and json raise several types for a damaged file
        raise damaged(f"{type(error).__name__}: {str(error)[:200]}") from None
    if step > config.steps:
        raise ResumeError(f"cannot resume from {path}: it is at step {step}, past this run's {config.steps} steps")
    if step < 0 or not isinstance(history, list) or not isinstance(validation, list) \
            or not isinstance(state, dict) or len(history) != step:
        raise damaged(f"its step count ({step}) and history ({len(history) if isinstance(history, list) else '?'} "
                      f"entries) do not fit a run of {config.steps} steps")
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(value.isfinite().all()):
            raise damaged(f"{key} holds NaN or infinite values")
    return step, tensors, history, validation, best_step, state
