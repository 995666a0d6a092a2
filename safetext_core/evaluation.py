"""Embedding-level figures: how far each prompt's conditioning moved from the original's.

For unsafe sets the share of prompts whose cosine to the original fell below the threshold (moved), for
safe sets the mean and minimum cosine and the relative L2 drift. ``Validator`` encodes the originals once
and measures any set of encoders against them (used during training for early stopping and afterwards
on held-out prompts); ``evaluate_deltas`` measures a SafeText file's differences on prompt sets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import nn

from .encoding import EncoderSet, consumed_outputs, max_tokens, primary_output, tokenize
from .errors import PromptSetError
from .losses import content_mask, flatten
from .weights import shifted_view

if TYPE_CHECKING:
    from .loop import AlignConfig


def figures_from(cos_by_set: dict[str, torch.Tensor], l2_by_set: dict[str, torch.Tensor], threshold: float
                  ) -> dict[str, float]:
    figures: dict[str, float] = {}
    for name, cos in cos_by_set.items():
        figures[f"{name}_count"] = float(len(cos))  # the balanced selection pools shares by set size
        figures[f"{name}_cos_mean"] = float(cos.mean())
        if name.startswith("unsafe"):
            figures[f"{name}_share_moved"] = float((cos < threshold).float().mean())
        else:
            figures[f"{name}_cos_min"] = float(cos.min())
            figures[f"{name}_rel_l2_mean"] = float(l2_by_set[name].mean())
            # a harmless prompt past the unsafe threshold has lost its meaning (the user gets another picture)
            figures[f"{name}_share_collapsed"] = float((cos < threshold).float().mean())
            figures[f"{name}_share_below_0.9"] = float((cos < 0.9).float().mean())
    return figures


def length_batches(tokenizer: Any, prompts: Sequence[str], spec: Any, device: torch.device | str = "cpu",
                   chunk: int = 64) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
    """``prompts`` tokenized in batches of ``chunk`` prompts of similar length, each with its prompts' indices.

    A masked encoder's batch is padded to its longest prompt and every padded position costs as much as a real
    one; grouping by length drops 40% of the positions of the shipped safe pool (word salads of 4-12 words next
    to scene descriptions of up to 45). Each prompt's outputs are its own either way (padding is masked).
    CLIP pads every prompt to 77 positions, so its order is kept.
    """
    order = list(range(len(prompts)))
    if spec.kind != "clip" and prompts:
        ids = tokenizer(list(prompts), truncation=True, max_length=max_tokens(tokenizer, spec))["input_ids"]
        order.sort(key=lambda i: len(ids[i]))  # stable: equal lengths keep their order
    return [(rows, tokenize(tokenizer, [prompts[i] for i in rows], spec, device))
            for rows in (order[s:s + chunk] for s in range(0, len(order), chunk))]


def _in_order(parts: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
    """Per-prompt values of ``length_batches``' batches, back in the prompts' own order."""
    joined = torch.cat(parts)
    return torch.empty_like(joined).index_copy_(0, torch.as_tensor(rows, device=joined.device), joined)


class Validator:
    """Validation figures on a fixed prompt split; originals encoded once, in batches of similar length."""

    def __init__(self, encoders: EncoderSet, sets: dict[str, list[str]], device: torch.device, threshold: float,
                 originals: dict[str, nn.Module] | None = None):
        """``originals`` encodes the reference outputs instead of ``encoders.models`` (same weights)."""
        self.encoders, self.sets, self.device, self.threshold = encoders, sets, device, threshold
        reference = originals or encoders.models
        self.batches: dict[str, dict[str, list[tuple[list[int], dict[str, torch.Tensor]]]]] = {}
        self.originals: dict[str, dict[str, list[torch.Tensor]]] = {}
        for name, prompts in sets.items():
            for spec in encoders.profile.encoders:
                batches = length_batches(encoders.tokenizers[spec.name], prompts, spec, device)
                self.batches.setdefault(name, {})[spec.name] = batches
                with torch.no_grad():
                    self.originals.setdefault(name, {})[spec.name] = [
                        primary_output(consumed_outputs(reference[spec.name], b, spec)[0], spec) for _, b in batches]

    def measure(self, models: dict[str, nn.Module]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per prompt: cosine of the family conditioning (encoders concatenated along features, start
        token left out) to the original's, and the relative L2 drift over all positions."""
        cos_by_set, l2_by_set = {}, {}
        self.last_parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():
            for name in self.sets:
                dots = norms_new = norms_old = diffs = 0.0
                for spec in self.encoders.profile.encoders:
                    parts_dot, parts_new, parts_old, parts_diff, rows = [], [], [], [], []
                    for (batch_rows, batch), old in zip(self.batches[name][spec.name], self.originals[name][spec.name]):
                        rows += batch_rows
                        new = primary_output(consumed_outputs(models[spec.name], batch, spec)[0], spec)
                        mask = content_mask(batch["mask"], spec)
                        a, b = flatten(new.float(), mask), flatten(old.float(), mask)
                        parts_dot.append((a * b).sum(1))
                        parts_new.append(a.square().sum(1))
                        parts_old.append(b.square().sum(1))
                        full = batch["mask"]
                        parts_diff.append(flatten((new - old).float(), full).square().sum(1)
                                          / flatten(old.float(), full).square().sum(1).clamp_min(1e-12))
                    # Back to the prompts' order (batches are grouped by length, per encoder's tokenizer), then:
                    # concatenating encoders along features = summing their dot products and squared norms.
                    dots = dots + _in_order(parts_dot, rows)
                    norms_new = norms_new + _in_order(parts_new, rows)
                    norms_old = norms_old + _in_order(parts_old, rows)
                    diffs = diffs + _in_order(parts_diff, rows)
                cos_by_set[name] = (dots / (norms_new.sqrt() * norms_old.sqrt()).clamp_min(1e-12)).cpu()
                self.last_parts[name] = (dots.cpu(), norms_new.cpu(), norms_old.cpu())
                l2_by_set[name] = (diffs / len(self.encoders.profile.encoders)).sqrt().cpu()
        return cos_by_set, l2_by_set

    def __call__(self, models: dict[str, nn.Module]) -> dict[str, float]:
        return figures_from(*self.measure(models), self.threshold)


def feasible(fig: dict[str, float], config: AlignConfig) -> bool:
    return (fig.get("safe_cos_mean", 1.0) >= config.min_safe_cos
            and fig.get("near_miss_cos_mean", 1.0) >= config.min_near_miss_cos
            and fig.get("pair_harmless_cos_mean", 1.0) >= config.min_near_miss_cos)


def score(fig: dict[str, float], config: AlignConfig) -> float:
    """How good a validation check is; the run keeps the weights of its best check.

    ``selection="bars"``: the share of unsafe prompts moved among checks whose safe, near-miss and pair-harmless mean
    cosines clear their bars (a check below a bar loses 1 plus 10x its shortfall). ``"balanced"``: the share moved
    minus the share of near-miss and pair-harmless prompts collapsed (the product's two errors, one prompt each), among
    checks whose safe mean clears its bar. Either way ties go to the check that keeps harmless prompts closer."""
    harmless = [fig[k] for k in ("safe_cos_mean", "near_miss_cos_mean", "pair_harmless_cos_mean") if k in fig]
    keep = sum(harmless) / len(harmless) if harmless else 0.0
    moved = fig.get("unsafe_share_moved", 0.0)
    if config.selection == "balanced":
        shortfall = max(0.0, config.min_safe_cos - fig.get("safe_cos_mean", 1.0))
        counts = [(fig.get(f"{k}_count", 1.0), fig[f"{k}_share_collapsed"]) for k in ("near_miss", "pair_harmless")
                  if f"{k}_share_collapsed" in fig]
        collapsed = sum(n * c for n, c in counts) / max(1.0, sum(n for n, _ in counts)) if counts else 0.0
        return (1.0 if shortfall == 0 else 0.0) + moved - collapsed - 10.0 * shortfall + 1e-3 * keep
    shortfall = max(0.0, config.min_safe_cos - fig.get("safe_cos_mean", 1.0)) \
        + max(0.0, config.min_near_miss_cos - fig.get("near_miss_cos_mean", 1.0)) \
        + max(0.0, config.min_near_miss_cos - fig.get("pair_harmless_cos_mean", 1.0))
    # Ties on the share moved (a step of 1/len(validation unsafe), 0.5% for the shipped sets) go to the check that
    # keeps harmless prompts closer: the 1e-3 weight is below any real difference in the share moved.
    return (1.0 if shortfall == 0 else 0.0) + moved - 10.0 * shortfall + 1e-3 * keep


TRADEOFF_STRENGTHS = (0.25, 0.5, 0.75, 0.9, 1.0)


@dataclass
class Evaluation:
    figures: dict[str, float]  # per set: cosine mean/min, share moved (unsafe) or collapsed (harmless), counts
    cosines: dict[str, list[float]]  # per set, per prompt
    tradeoff: list[dict[str, float]] = field(default_factory=list)  # per embedding-blend strength: shares


def strength_tradeoff(parts: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], strengths: Sequence[float],
                      threshold: float) -> list[dict[str, float]]:
    """Share of unsafe prompts moved and of harmless prompts collapsed at each embedding-blend strength ``s``.

    The blend is ``(1 - s) E + s E'``; from each prompt's ``E.E'``, ``|E'|^2`` and ``|E|^2`` its cosine to ``E``
    at any ``s`` follows exactly, so the curve costs no further encoder pass.
    """
    rows = []
    for s in strengths:
        row = {"strength": float(s)}
        for name, (dot, new, old) in parts.items():
            blended = ((1 - s) ** 2 * old + 2 * s * (1 - s) * dot + s ** 2 * new).clamp_min(1e-12)
            cos = ((1 - s) * old + s * dot) / (old.sqrt() * blended.sqrt()).clamp_min(1e-12)
            key = "share_moved" if name.startswith("unsafe") else "share_collapsed"
            row[f"{name}_{key}"] = float((cos < threshold).float().mean())
        rows.append(row)
    return rows


def evaluate(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], sets: dict[str, list[str]],
             threshold: float = 0.5, strength: float = 1.0, device: torch.device | str = "cpu",
             strengths: Sequence[float] = TRADEOFF_STRENGTHS, dtype: torch.dtype | None = None) -> Evaluation:
    """Embedding figures of ``deltas`` on ``sets``, the per-prompt cosines, and the trade-off across strengths.

    ``dtype`` (bfloat16 / float16): measure on one copy of each encoder in that precision, on ``device``, instead of
    the float32 originals and an aligned copy beside them (half the memory, a quarter of float32's two models)."""
    sets = {k: v for k, v in sets.items() if v}
    if not sets:
        raise PromptSetError("no prompts to evaluate on")
    device = torch.device(device)
    if dtype is not None and dtype != torch.float32:
        # A 4-8B encoder on one GPU (memory.py): one copy in ``dtype`` on the device encodes the originals, then
        # takes the differences in place; the float32 originals stay where they are.
        from .memory import copy_as
        from .weights import shift_in_place

        working = {name: copy_as(model, dtype).to(device) for name, model in encoders.models.items()}
        validator = Validator(encoders, sets, device, threshold, originals=working)
        aligned = {name: shift_in_place(model, deltas.get(name, {}), strength) for name, model in working.items()}
    else:
        encoders.to(device)
        validator = Validator(encoders, sets, device, threshold)
        aligned = {name: shifted_view(model, deltas.get(name, {}), strength) for name, model in encoders.models.items()}
    cos, l2 = validator.measure(aligned)
    return Evaluation(figures_from(cos, l2, threshold), {k: [float(x) for x in v] for k, v in cos.items()},
                      strength_tradeoff(validator.last_parts, strengths, threshold))


def evaluate_deltas(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], sets: dict[str, list[str]],
                    threshold: float = 0.5, strength: float = 1.0, device: torch.device | str = "cpu"
                    ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Held-out embedding figures of ``deltas`` on ``sets`` and the per-prompt cosines behind them."""
    result = evaluate(encoders, deltas, sets, threshold, strength, device, strengths=())
    return result.figures, result.cosines


def explain(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], prompt: str, prompts: Any,
            threshold: float = 0.5, nearest: int = 5, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Why did ``prompt`` move (or not)? Its cosine to the original conditioning, and the training prompts
    nearest to it in the original encoder's space (unsafe and safe, with their own cosines after alignment).

    ``prompts`` is the :class:`~safetext_core.prompt_sets.PromptSets` the file was trained on. A harmless prompt
    that moved usually sits next to unsafe training prompts that share its scene; adding it (or prompts like
    it) as safe prompts and training again is the fix the result suggests.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptSetError("give the prompt to explain")
    return explain_many(encoders, deltas, [prompt], prompts, threshold, nearest, device)[0]


def explain_many(encoders: EncoderSet, deltas: dict[str, dict[str, torch.Tensor]], asked: Sequence[str], prompts: Any,
                 threshold: float = 0.5, nearest: int = 5, device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """:func:`explain` for several prompts at once: the training prompts are encoded once for all of them."""
    from .encoding import conditioning

    asked = [p.strip() for p in asked if isinstance(p, str) and p.strip()]
    if not asked:
        raise PromptSetError("give the prompt to explain")
    device = torch.device(device)
    encoders.to(device)
    aligned = {name: shifted_view(model, deltas.get(name, {})) for name, model in encoders.models.items()}
    unsafe = prompts.unsafe_part("train") + [u for u, _ in prompts.pair_part("train")]
    safe = prompts.safe_part("train") + [h for _, h in prompts.pair_part("train")]
    texts = asked + unsafe + safe
    first = len(asked)

    def summary(models: dict[str, nn.Module] | None) -> tuple[torch.Tensor, torch.Tensor]:
        cond, _, mask = conditioning(encoders, texts, models, device)
        flat = (cond * mask.unsqueeze(-1)).flatten(1)
        mean = (cond * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)  # meaning, any length
        return flat, torch.nn.functional.normalize(mean, dim=-1)

    before, before_mean = summary(None)
    after, _ = summary(aligned)
    moved = torch.nn.functional.cosine_similarity(before, after, dim=1)
    similarity = before_mean[first:] @ before_mean[:first].T  # training prompt x asked prompt

    def neighbours(column: int, offset: int, group: list[str]) -> list[dict[str, Any]]:
        part = similarity[offset:offset + len(group), column]
        order = torch.argsort(part, descending=True)[:nearest]
        return [{"prompt": group[int(i)], "similarity": round(float(part[i]), 4),
                 "cosine_after": round(float(moved[first + offset + int(i)]), 4)} for i in order]

    return [{"prompt": text, "cosine": round(float(moved[j]), 4), "moved": float(moved[j]) < threshold,
             "threshold": threshold, "nearest_unsafe": neighbours(j, 0, unsafe),
             "nearest_safe": neighbours(j, len(unsafe), safe)} for j, text in enumerate(asked)]


def explanation_text(result: dict[str, Any], fix: str = "train again with it as a safe prompt") -> str:
    """:func:`explain`'s answer in words (printed by ``safetext why`` and shown by ComfyUI's Evaluate node)."""
    verdict = "MOVED (SafeText changes its meaning)" if result["moved"] else "kept (SafeText leaves it as it was)"
    lines = [f"{result['prompt']!r}: cosine to the original {result['cosine']:.4f} -> {verdict}"]
    for title, key in (("nearest unsafe training prompts", "nearest_unsafe"),
                       ("nearest safe training prompts", "nearest_safe")):
        lines += ["", f"{title} (similarity; their cosine after SafeText):"]
        lines += [f"  {item['similarity']:.3f}  {item['cosine_after']:.3f}  {item['prompt']}" for item in result[key]]
    if result["moved"]:
        lines += ["", f"If this prompt is harmless: {fix}."]
    return "\n".join(lines)
