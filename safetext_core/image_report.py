"""The image-level evaluation's report PNG, drawn with the chart helpers of :mod:`.plots` (Pillow only).

Four panels: the share of unsafe prompts' pictures the detector judges unsafe, before and after SafeText, per
category (with the removal rate); the detector's scores before and after; the SSIM of each safe prompt's
picture pair; a table of the figures. A panel without data says so.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from PIL import Image

from .plots import _AXIS, _MUTED, _Canvas, _dashed, _fmt, _line_h, _panel, _tsize

_BEFORE, _AFTER, _SAFE = (214, 39, 40), (44, 160, 44), (31, 119, 180)


def _rates(c: _Canvas, box: tuple, figures: dict[str, float], categories: list[str], covered: dict[str, bool],
           detector: str) -> None:
    inner = _panel(c, box, f"Unsafe prompts: pictures judged unsafe ({detector})")
    groups = [(c_, f"unsafe_{c_}") for c_ in categories] + ([("all", "unsafe")] if len(categories) > 1 else [])
    groups = [(label, key) for label, key in groups if f"{key}_rate_before" in figures]
    if not groups:
        return c.no_data(inner, "no unsafe prompts judged")
    y = inner[1] + c.legend(inner[0], inner[1], inner[2], [("original encoder", _BEFORE, "bar"), ("SafeText", _AFTER, "bar")])
    (ax0, ay0, ax1, ay1), to_px = c.axes((inner[0], y, inner[2], inner[3] - _line_h(c.draw, c.f_small) - 4),
                                         (0.0, float(len(groups))), (0.0, 1.05), "", "share unsafe", False)
    # The axes' numeric x ticks mean nothing here: paint over them, then label each group.
    c.draw.rectangle((inner[0], ay1 + 2, inner[2], inner[3]), fill="white")
    c.draw.rectangle((ax0, ay0, ax1, ay1), outline=_AXIS)
    for i, (label, key) in enumerate(groups):
        width = (ax1 - ax0) / len(groups)
        for j, (name, colour) in enumerate((("before", _BEFORE), ("after", _AFTER))):
            value = figures[f"{key}_rate_{name}"]
            x0 = ax0 + i * width + width * (0.15 + 0.35 * j)
            top = to_px(0, value if math.isfinite(value) else 0)[1]
            c.draw.rectangle((round(x0), round(top), round(x0 + width * 0.33), ay1), fill=colour)
            text = _fmt(value) if math.isfinite(value) else "-"
            c.text((x0 + (width * 0.33 - _tsize(c.draw, text, c.f_small)[0]) / 2, top - _line_h(c.draw, c.f_small) - 1),
                   text, c.f_small)
        removal = figures.get(f"{key}_removal_rate", float("nan"))
        shown = f"{label}: removed {removal:.0%}" if math.isfinite(removal) else f"{label}: none unsafe before"
        if not covered.get(label, True):
            shown += " (not judged by this detector)"
        c.text((ax0 + i * width + (width - _tsize(c.draw, shown, c.f_small)[0]) / 2, ay1 + 4), shown, c.f_small)


def _histogram(c: _Canvas, box: tuple, title: str, series: list[tuple[str, list[float], tuple]], xlabel: str,
               threshold: float | None = None, bins: int = 20) -> None:
    inner = _panel(c, box, title)
    series = [(name, [min(max(v, 0.0), 1.0) for v in values if math.isfinite(v)], colour)
              for name, values, colour in series]
    series = [s for s in series if s[1]]
    if not series:
        return c.no_data(inner)
    entries = [(name, colour, "bar") for name, _, colour in series]
    if threshold is not None:
        entries.append((f"threshold {threshold:g}", _MUTED, "dash"))
    y = inner[1] + c.legend(inner[0], inner[1], inner[2], entries)
    hists = []
    for _, values, colour in series:
        counts = [0] * bins
        for v in values:
            counts[min(int(v * bins), bins - 1)] += 1
        hists.append(([n / len(values) for n in counts], colour))
    ymax = max(max(h) for h, _ in hists)
    (ax0, ay0, ax1, ay1), to_px = c.axes((inner[0], y, inner[2], inner[3]), (0.0, 1.0), (0.0, ymax * 1.08),
                                         xlabel, "share of pictures", False)
    for h, colour in hists:
        for i, share in enumerate(h):
            x0, top = to_px(i / bins, share)
            x1 = to_px((i + 1) / bins, 0)[0]
            rect = (round(x0), round(top), round(x1), ay1)
            if share > 0 and rect[3] > rect[1] and rect[2] > rect[0]:  # translucent, so both series stay visible
                region = c.img.crop(rect)
                c.img.paste(Image.blend(region, Image.new("RGB", region.size, colour), 0.45), rect[:2])
    if threshold is not None:
        tx = to_px(threshold, 0)[0]
        _dashed(c.draw, (tx, ay0), (tx, ay1), _AXIS)


def _figures_table(c: _Canvas, box: tuple, rows: Sequence[tuple[str, str]]) -> None:
    inner = _panel(c, box, "Figures")
    if not rows:
        return c.no_data(inner)
    lh = _line_h(c.draw, c.f) + round(5 * c.s)
    per_col = max(1, (inner[3] - inner[1]) // lh)
    ncols = min(2, max(1, math.ceil(len(rows) / per_col)))
    rows = list(rows)[: per_col * ncols]
    col_w = (inner[2] - inner[0]) // ncols
    for i, (name, value) in enumerate(rows):
        x, y = inner[0] + (i // per_col) * col_w, inner[1] + (i % per_col) * lh
        if i % 2 == 0:
            c.draw.rectangle((x, y, x + col_w - 8, y + lh - 1), fill=(245, 245, 245))
        c.text((x + 4, y + 2), name, c.f)
        c.text((x + col_w - 14 - _tsize(c.draw, value, c.f)[0], y + 2), value, c.f)


def _value(v: float) -> str:
    if not math.isfinite(v):
        return "-" if math.isnan(v) else "identical"
    return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.3f}"


def render_image_report(result: Any, title: str = "SafeText image evaluation", threshold: float = 0.5,
                        size: tuple[int, int] = (1200, 800)) -> Image.Image:
    """The 2x2 report of an :class:`~safetext_core.evaluate_images.ImageEvaluation` as an RGB image."""
    c = _Canvas(size)
    m = round(12 * c.s)
    c.text((m, m), title, c.f_title)
    top = m + _line_h(c.draw, c.f_title) + m
    mid_x, mid_y = c.w // 2, top + (c.h - top - m) // 2
    left, right, bottom = (m, mid_x - m // 2), (mid_x + m // 2, c.w - m), c.h - m
    figures, detector = result.figures, result.detector or "no detector"
    categories = list(dict.fromkeys(r["category"] for r in result.unsafe_rows))
    covered = {**result.covered, "all": all(result.covered.values()) if result.covered else True}
    _rates(c, (left[0], top, left[1], mid_y - m // 2), figures, categories, covered, detector)
    _histogram(c, (right[0], top, right[1], mid_y - m // 2), f"Unsafe prompts: {detector} scores",
               [("original encoder", [r["score_before"] for r in result.unsafe_rows], _BEFORE),
                ("SafeText", [r["score_after"] for r in result.unsafe_rows], _AFTER)], "detector score", threshold)
    ssims = [r["ssim"] for r in result.safe_rows]
    _histogram(c, (left[0], mid_y + m // 2, left[1], bottom), "Safe prompts: SSIM, original vs SafeText picture",
               [(f"SSIM (n={len(ssims)}, mean {_value(figures.get('safe_ssim_mean', float('nan')))}, "
                 f"PSNR {_value(figures.get('safe_psnr_mean', float('nan')))} dB)", ssims, _SAFE)], "SSIM (1 = unchanged)")
    shown = [(k, _value(v)) for k, v in figures.items()
             if k.endswith(("_images", "_rate_before", "_rate_after", "_removal_rate", "_ssim_mean", "_ssim_min",
                            "_psnr_mean"))]
    shown.append(("perceptual distance (LPIPS)", "not available offline"))
    _figures_table(c, (right[0], mid_y + m // 2, right[1], bottom), shown)
    return c.img
