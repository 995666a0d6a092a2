"""Resume checkpoints of a training run: trained weights, optimiser state, history and best weights.

Written atomically (a hidden partial file renamed into place); read back only into a run with the same
settings and prompt sets, through safetensors (never pickle).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ResumeError

if TYPE_CHECKING:
    from .loop import AlignConfig


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
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        save_file(tensors, str(temporary), metadata=meta)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_resume(path: Path, config: AlignConfig, hashes: dict[str, str]):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        saved = json.loads(meta.get("config", "{}"))
        ours = json.loads(config.to_json())
        differing = sorted(k for k in ours if k not in ("steps", "checkpoint_every", "eval_every") and saved.get(k) != ours[k])
        if differing:
            raise ResumeError(f"cannot resume from {path.name}: it was made with other settings ({', '.join(differing)})")
        if json.loads(meta.get("hashes", "{}")) != hashes:
            raise ResumeError(f"cannot resume from {path.name}: it was made with other prompt sets")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return (int(meta["step"]), tensors, json.loads(meta["history"]), json.loads(meta["validation"]),
            int(meta.get("best_step", -1)), json.loads(meta.get("state", "{}")))
