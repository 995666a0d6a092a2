"""The moderation signal: per prompt, how far SafeText moved the conditioning the diffusion model sees.

Applying a file already computes, for every prompt, the original conditioning ``E(x)`` and what the host
passes on (``lerp(E(x), E'(x), s)``), so the signal costs a few dot products: the cosine between the two,
measured as the evaluation measures it (:meth:`safetext_core.evaluation.Validator.measure`): the encoder's
hidden state over every position except the start token (under causal attention it is the same vector for
every prompt), several encoders (SDXL's CLIP-L and bigG) and several 77-token chunks of one long prompt
counted as one vector (their dot products and squared norms add up). A prompt is **moved** when the cosine
falls below :data:`MOVED_BELOW`, the threshold of every "share moved" figure in the docs.

Hosts only collect the two tensors per encoder call (:meth:`SignalSum.add`) and show the result; this
module is the one place that computes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

MOVED_BELOW = 0.5  # = AlignConfig.threshold: an unsafe prompt counts as moved below this cosine


@dataclass(frozen=True)
class PromptSignal:
    """What SafeText did to one prompt: the cosine of the conditioning passed on to the original one."""

    cosine: float
    moved: bool

    @classmethod
    def of(cls, cosine: float, threshold: float = MOVED_BELOW) -> "PromptSignal":
        return cls(round(float(cosine), 4), bool(cosine < threshold))

    def text(self) -> str:
        return f"{'moved' if self.moved else 'kept'} (cos {self.cosine:.3f})"

    def as_dict(self) -> dict[str, Any]:
        return {"cosine": self.cosine, "moved": self.moved}


def hidden_state(output: Any) -> torch.Tensor | None:
    """The conditioning tensor of an encoder output: the first floating-point tensor of rank 3 ([rows, tokens,
    features]) in a tensor, tuple/list or dict (ComfyUI's ``(z, pooled)``, transformers' outputs)."""
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() and output.dim() == 3 else None
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    for value in values:
        found = hidden_state(value)
        if found is not None:
            return found
    return None


class SignalSum:
    """Per row (prompt), dot product and squared norms of original and passed-on conditioning, summed over
    every encoder pass added: the cosine of the concatenated conditioning, as the evaluation computes it."""

    def __init__(self) -> None:
        self.dot: torch.Tensor | None = None
        self.original: torch.Tensor | None = None
        self.output: torch.Tensor | None = None

    def add(self, original: Any, output: Any, skip_start: bool = True) -> None:
        """Add one encoder pass (``original`` and ``output`` are whole encoder outputs or tensors). Passes with
        another number of rows than the first are refused (:class:`ValueError`): they are other prompts."""
        a, b = hidden_state(original), hidden_state(output)
        if a is None or b is None or a.shape != b.shape:
            return  # nothing comparable (an encoder that returned no hidden state): no signal from it
        with torch.no_grad():
            a, b = a.detach().float(), b.detach().float()
            if skip_start and a.shape[1] > 1:
                a, b = a[:, 1:], b[:, 1:]
            a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
            parts = ((a * b).sum(1).cpu(), a.square().sum(1).cpu(), b.square().sum(1).cpu())
        if self.dot is None:
            self.dot, self.original, self.output = parts
            return
        if parts[0].shape != self.dot.shape:
            raise ValueError(f"a pass of {parts[0].shape[0]} rows added to a signal of {self.dot.shape[0]}")
        self.dot, self.original, self.output = self.dot + parts[0], self.original + parts[1], self.output + parts[2]

    @property
    def rows(self) -> int:
        return 0 if self.dot is None else int(self.dot.shape[0])

    def cosines(self, rows: Sequence[int] | None = None) -> list[float]:
        """Per row, or of ``rows`` taken together as one prompt (e.g. the chunks of a long prompt)."""
        if self.dot is None:
            return []
        dot, original, output = self.dot, self.original, self.output
        if rows is not None:
            index = torch.tensor(list(rows), dtype=torch.long)
            dot, original, output = (t.index_select(0, index).sum(0, keepdim=True) for t in (dot, original, output))
        return (dot / (original.sqrt() * output.sqrt()).clamp_min(1e-12)).tolist()

    def signals(self, threshold: float = MOVED_BELOW) -> list[PromptSignal]:
        return [PromptSignal.of(c, threshold) for c in self.cosines()]

    def signal(self, rows: Sequence[int] | None = None, threshold: float = MOVED_BELOW) -> PromptSignal | None:
        """One signal for ``rows`` (default: every row) taken together; None when nothing was added."""
        if self.dot is None:
            return None
        rows = range(self.rows) if rows is None else rows
        return PromptSignal.of(self.cosines(rows)[0], threshold) if len(rows) else None


def combined_signal(parts: Sequence[tuple[SignalSum, Sequence[int]]], threshold: float = MOVED_BELOW
                    ) -> PromptSignal | None:
    """One signal for several sums taken together, each with the rows that belong to the prompt (e.g. SDXL's
    CLIP-L and bigG passes of one prompt, each without the empty-prompt row ComfyUI adds for weights)."""
    dot = original = output = 0.0
    found = False
    for total, rows in parts:
        if total.dot is None or not len(rows):
            continue
        index = torch.tensor(list(rows), dtype=torch.long)
        dot += float(total.dot.index_select(0, index).sum())
        original += float(total.original.index_select(0, index).sum())
        output += float(total.output.index_select(0, index).sum())
        found = True
    if not found:
        return None
    return PromptSignal.of(dot / max((original ** 0.5) * (output ** 0.5), 1e-12), threshold)


class Recorder:
    """Encoder passes grouped into prompts: a pass through an encoder the current group already holds starts the
    next group (a diffusers pipeline encodes the prompt, then the negative prompt, each through every encoder)."""

    def __init__(self) -> None:
        self.groups: list[dict[str, SignalSum]] = []

    def add(self, encoder: str, original: Any, output: Any) -> None:
        if not self.groups or encoder in self.groups[-1]:
            self.groups.append({})
        total = self.groups[-1].setdefault(encoder, SignalSum())
        try:
            total.add(original, output)
        except ValueError:  # pragma: no cover - add() on a fresh sum never refuses
            pass

    def signals(self, group: int = 0, threshold: float = MOVED_BELOW) -> list[PromptSignal] | None:
        """Per row (prompt) of one group, its encoders taken together; None when there is no such group."""
        if not -len(self.groups) <= group < len(self.groups):
            return None
        sums = [t for t in self.groups[group].values() if t.dot is not None]
        rows = {t.rows for t in sums}
        if len(rows) != 1:
            return None
        out = []
        for row in range(rows.pop()):
            signal = combined_signal([(t, [row]) for t in sums], threshold)
            if signal is not None:
                out.append(signal)
        return out


def signal_of(original: Any, output: Any, threshold: float = MOVED_BELOW) -> list[PromptSignal]:
    """Per row of one encoder pass: the signal (a shortcut for one :class:`SignalSum`)."""
    total = SignalSum()
    total.add(original, output)
    return total.signals(threshold)


__all__ = ["MOVED_BELOW", "PromptSignal", "SignalSum", "Recorder", "combined_signal", "hidden_state", "signal_of"]
