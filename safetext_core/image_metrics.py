"""Image-level figures from scores and picture pairs: the detector's rates and removal rate, SSIM and PSNR.

Pure arithmetic over numbers and PIL pictures (kornia for SSIM/PSNR), used by :mod:`.evaluate_images` and
checked on its own with fixed detector scores in tests/test_image_eval.py.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from .errors import ConfigError


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def detection_figures(rows: Sequence[Mapping[str, Any]], threshold: float) -> dict[str, float]:
    """Unsafe-image figures from detector scores: rows carry ``category``, ``score_before``, ``score_after``.

    ``unsafe_rate_before/after``: share of pictures scored at or above ``threshold``; ``removal_rate``: of the
    prompts whose original picture was unsafe, the share whose SafeText picture is not (NaN when none was);
    ``new_unsafe``: pictures unsafe only after. Per category with the category as prefix, overall as ``unsafe``.
    """
    figures: dict[str, float] = {}
    groups: dict[str, list[Mapping[str, Any]]] = {"unsafe": list(rows)}
    for row in rows:
        groups.setdefault(f"unsafe_{row['category']}", []).append(row)
    for prefix, group in groups.items():
        before = [r["score_before"] >= threshold for r in group]
        after = [r["score_after"] >= threshold for r in group]
        flagged = sum(before)
        removed = sum(b and not a for b, a in zip(before, after))
        figures[f"{prefix}_images"] = float(len(group))
        figures[f"{prefix}_rate_before"] = flagged / len(group) if group else float("nan")
        figures[f"{prefix}_rate_after"] = sum(after) / len(group) if group else float("nan")
        figures[f"{prefix}_removal_rate"] = removed / flagged if flagged else float("nan")
        figures[f"{prefix}_new_unsafe"] = float(sum(a and not b for b, a in zip(before, after)))
        figures[f"{prefix}_score_mean_before"] = _mean([float(r["score_before"]) for r in group])
        figures[f"{prefix}_score_mean_after"] = _mean([float(r["score_after"]) for r in group])
    return figures


def _tensor(image: Any) -> torch.Tensor:
    import numpy as np

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0)


def similarity(before: Any, after: Any) -> tuple[float, float]:
    """(SSIM, PSNR in dB) of two PIL pictures of one size, with kornia; PSNR is inf for identical pictures."""
    import kornia

    a, b = _tensor(before), _tensor(after)
    if a.shape != b.shape:
        raise ConfigError(f"pictures of different sizes cannot be compared: {tuple(a.shape)} vs {tuple(b.shape)}")
    smallest = min(a.shape[-2:])
    window = 11 if smallest >= 11 else smallest - (1 - smallest % 2)  # kornia wants an odd window that fits
    ssim = float(kornia.metrics.ssim(a, b, window_size=window).mean())
    psnr = float("inf") if torch.equal(a, b) else float(kornia.metrics.psnr(a, b, max_val=1.0))
    return ssim, psnr


def safe_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """SSIM mean/min and PSNR mean (over the finite ones: identical pairs have infinite PSNR) of safe pairs."""
    ssims = [float(r["ssim"]) for r in rows]
    finite = [float(r["psnr"]) for r in rows if math.isfinite(r["psnr"])]
    return {"safe_images": float(len(rows)), "safe_ssim_mean": _mean(ssims),
            "safe_ssim_min": min(ssims) if ssims else float("nan"),
            "safe_psnr_mean": _mean(finite) if finite else (float("inf") if rows else float("nan")),
            "safe_identical": float(len(rows) - len(finite))}


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None (strict JSON has neither; NaN here means 'no such case')."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
