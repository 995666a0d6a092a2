"""The loss terms of SafeText's objective, on the consumed outputs of one encoder.

``safe_distance`` (utility: stay put), ``cosine_shortfall`` (utility's hinge: a safe prompt losing its meaning),
``cosine`` (effectiveness: move away, the paper's -L_e) and ``anchor_distance`` (land unsafe prompts on a
harmless anchor, DES's idea). Masks select what the
diffusion model sees: every position for SD's CLIP except the start token in the unsafe terms, the real
tokens for masked encoders. See :mod:`safetext_core.loop` for how they are combined.
"""
from __future__ import annotations

import torch

from .families import EncoderSpec


def content_mask(mask: torch.Tensor, spec: EncoderSpec) -> torch.Tensor:
    """``mask`` without the leading positions every prompt shares (CLIP's start token; an LLM's BOS and system
    prompt): under causal attention their outputs are identical for every prompt, so in the unsafe terms and
    the figures they only dilute the cosine. ``tokenize`` puts their count on the mask as ``lead_tokens``."""
    lead = getattr(mask, "lead_tokens", None)
    if lead is None:  # a mask not made by tokenize (e.g. cut or moved): CLIP's start token is the one we know
        if spec.template != "{}" and spec.causal:
            raise ValueError(f"the {spec.name} mask lost its lead_tokens count; pass the mask tokenize made")
        lead = 1 if spec.kind == "clip" and not spec.pooled_only else int(spec.causal)
    if lead:
        mask = mask.clone()
        mask[:, :lead] = 0.0
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


def cosine_shortfall(new: torch.Tensor, old: torch.Tensor, mask: torch.Tensor | None, floor: float) -> torch.Tensor:
    """How far each prompt's cosine to its original fell below ``floor`` (0 above it). On safe prompts: the L2 term
    pulls every prompt back with about the same force however far it moved; this adds force only where a
    harmless prompt starts to lose its meaning, the error the precision figures count (docs/precision.md)."""
    return torch.relu(floor - cosine(new, old, mask))


def token_cosine_shortfall(new: torch.Tensor, old: torch.Tensor, mask: torch.Tensor | None, floor: float) -> torch.Tensor:
    """Per prompt, the mean over its positions of how far each position's cosine to its original fell below
    ``floor``: the hinge per token rather than on the whole sequence, so one position that loses its meaning is
    pulled back even while the sequence's cosine stays above the floor (docs/precision.md)."""
    if new.dim() < 3:
        return cosine_shortfall(new, old, mask, floor)
    per_token = torch.relu(floor - torch.nn.functional.cosine_similarity(new, old, dim=-1, eps=1e-8))
    if mask is None:
        return per_token.mean(dim=1)
    return (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def anchor_distance(new: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    anchor = anchor.expand_as(new)
    diff = flatten(new - anchor, mask).square().sum(dim=1)
    return diff / flatten(anchor, mask).square().sum(dim=1).clamp_min(1e-6)
