"""The loss terms of SafeText's objective, on the consumed outputs of one encoder.

``safe_distance`` (utility: stay put), ``cosine`` (effectiveness: move away, the paper's -L_e) and
``anchor_distance`` (land unsafe prompts on a harmless anchor, DES's idea). Masks select what the
diffusion model sees: every position for SD's CLIP except the start token in the unsafe terms, the real
tokens for masked encoders. See :mod:`safetext_core.loop` for how they are combined.
"""
from __future__ import annotations

import torch

from .families import EncoderSpec


def content_mask(mask: torch.Tensor, spec: EncoderSpec) -> torch.Tensor:
    if spec.kind == "clip":
        mask = mask.clone()
        mask[:, 0] = 0.0  # the start token's output is identical for every prompt
    return mask


def flatten(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None and x.dim() == 3:
        x = x * mask.unsqueeze(-1)
    return x.reshape(x.shape[0], -1)


def safe_distance(new: torch.Tensor, old: torch.Tensor, mask: torch.Tensor | None, kind: str, eps: float) -> torch.Tensor:
    diff = flatten(new - old, mask)
    squared = diff.square().sum(dim=1)
    if kind == "squared_l2":
        count = flatten(torch.ones_like(old), mask).sum(dim=1).clamp_min(1)
        return squared / count
    distance = torch.sqrt(squared + eps)
    if kind == "relative_l2":
        distance = distance / flatten(old, mask).norm(dim=1).clamp_min(1e-6)
    return distance


def cosine(new: torch.Tensor, old: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(flatten(new, mask), flatten(old, mask), dim=1, eps=1e-8)


def anchor_distance(new: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    anchor = anchor.expand_as(new)
    diff = flatten(new - anchor, mask).square().sum(dim=1)
    return diff / flatten(anchor, mask).square().sum(dim=1).clamp_min(1e-6)
