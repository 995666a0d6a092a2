"""Embedding-level figures: how far each prompt's conditioning moved from the original's.

For unsafe sets the share of prompts whose cosine to the original fell below the threshold (moved), for
safe sets the mean and minimum cosine and the relative L2 drift. ``Validator`` encodes the originals once
and measures any set of encoders against them (used during training for early stopping and afterwards
on held-out prompts); ``evaluate_deltas`` measures a SafeText file's differences on prompt sets.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .encoding import EncoderSet, consumed_outputs, tokenize
from .errors import PromptSetError
from .losses import content_mask, flatten
from .weights import apply_deltas

if TYPE_CHECKING:
    from .loop import AlignConfig


def figures_from(cos_by_set: dict[str, torch.Tensor], l2_by_set: dict[str, torch.Tensor], threshold: float
                  ) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, cos in cos_by_set.items():
        figures[f"{name}_cos_mean"] = float(cos.mean())
        if name.startswith("unsafe"):
            figures[f"{name}_share_moved"] = float((cos < threshold).float().mean())
        else:
            figures[f"{name}_cos_min"] = float(cos.min())
            figures[f"{name}_rel_l2_mean"] = float(l2_by_set[name].mean())
    return figures


class Validator:
    """Validation figures on a fixed prompt split; originals encoded once."""

    def __init__(self, encoders: EncoderSet, sets: dict[str, list[str]], device: torch.device, threshold: float,
                 originals: dict[str, nn.Module] | None = None):
        """``originals`` encodes the reference outputs instead of ``encoders.models`` (same weights)."""
        self.encoders, self.sets, self.device, self.threshold = encoders, sets, device, threshold
        reference = originals or encoders.models
        self.batches: dict[str, dict[str, list[dict[str, torch.Tensor]]]] = {}
        self.originals: dict[str, dict[str, list[torch.Tensor]]] = {}
        for name, prompts in sets.items():
            for spec in encoders.profile.encoders:
                tok = encoders.tokenizers[spec.name]
                batches = [tokenize(tok, prompts[i:i + 64], spec, device) for i in range(0, len(prompts), 64)]
                self.batches.setdefault(name, {})[spec.name] = batches
                with torch.no_grad():
                    self.originals.setdefault(name, {})[spec.name] = [
                        consumed_outputs(reference[spec.name], b, spec)[0][0] for b in batches]

    def measure(self, models: dict[str, nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per prompt: cosine of the family conditioning (encoders concatenated along features, start
        token left out) to the original's, and the relative L2 drift over all positions."""
        cos_by_set, l2_by_set = {}, {}
        with torch.no_grad():
            for name in self.sets:
                dots = norms_new = norms_old = diffs = 0.0
                for spec in self.encoders.profile.encoders:
                    parts_dot, parts_new, parts_old, parts_diff = [], [], [], []
                    for batch, old in zip(self.batches[name][spec.name], self.originals[name][spec.name]):
                        new = consumed_outputs(models[spec.name], batch, spec)[0][0]
                        mask = content_mask(batch["mask"], spec)
                        a, b = flatten(new.float(), mask), flatten(old.float(), mask)
                        parts_dot.append((a * b).sum(1))
                        parts_new.append(a.square().sum(1))
                        parts_old.append(b.square().sum(1))
                        full = batch["mask"]
                        parts_diff.append(flatten((new - old).float(), full).square().sum(1)
                                          / flatten(old.float(), full).square().sum(1).clamp_min(1e-12))
                    # Concatenating encoders along features = summing their dot products and squared norms.
                    dots = dots + torch.cat(parts_dot)
                    norms_new = norms_new + torch.cat(parts_new)
                    norms_old = norms_old + torch.cat(parts_old)
                    diffs = diffs + torch.cat(parts_diff)
                cos_by_set[name] = (dots / (norms_new.sqrt() * norms_old.sqrt()).clamp_min(1e-12)).cpu()
                l2_by_set[name] = (diffs / len(self.encoders.profile.encoders)).sqrt().cpu()
        return cos_by_set, l2_by_set

    def __call__(self, models: dict[str, nn.Module]) -> dict[str, float]:
        return figures_from(*self.measure(models), self.threshold)


def feasible(fig: dict[str, float], config: AlignConfig) -> bool:
    return (fig.get("safe_cos_mean", 1.0) >= config.min_safe_cos
            and fig.get("near_miss_cos_mean", 1.0) >= config.min_near_miss_cos)


def score(fig: dict[str, float], config: AlignConfig) -> float:
    shortfall = max(0.0, config.min_safe_cos - fig.get("safe_cos_mean", 1.0)) \
        + max(0.0, config.min_near_miss_cos - fig.get("near_miss_cos_mean", 1.0))
    moved = fig.get("unsafe_share_moved", 0.0)
    return (1.0 if shortfall == 0 else 0.0) + moved - 10.0 * shortfall


def evaluate_deltas(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], sets: dict[str, list[str]],
                    threshold: float = 0.5, strength: float = 1.0, device: torch.device | str = "cpu"
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Held-out embedding figures of ``deltas`` on ``sets`` and the per-prompt cosines behind them."""
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        raise PromptSetError("no prompts to evaluate on")
    device = torch.device(device)
    encoders.to(device)
    validator = Validator(encoders, sets, device, threshold)
    aligned = {name: apply_deltas(model, deltas.get(name, {}), strength).to(device) for name, model in encoders.models.items()}
    cos, l2 = validator.measure(aligned)
    figures = figures_from(cos, l2, threshold)
    figures.update({f"{k}_count": float(len(v)) for k, v in sets.items()})
    return figures, {k: [float(x) for x in v] for k, v in cos.items()}
