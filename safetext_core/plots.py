"""Report figures for SafeText runs, drawn with Pillow only (no matplotlib, no numpy).

``render_report`` draws one 2x2 overview: training curves (loss and cos_u over steps), validation
figures over steps, histograms of held-out cosines to the original embedding per prompt set, and a
table of summary figures. ``save_report`` writes it as a PNG atomically. ``image_comparison`` lays
out before/after pictures in a grid. Everything tolerates empty or partial input: a panel without
data says "no data" instead of raising. Colours: unsafe sets red/orange, safe green, near_miss blue.
Longer than most modules because drawing with Pillow alone needs its own axes, ticks and histogram code; that
code serves every chart here and nothing else.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Iterable, Sequence

from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
Box = tuple[int, int, int, int]

_GROUPS: dict[str, list[Colour]] = {
    "unsafe": [(214, 39, 40), (255, 127, 14), (180, 70, 20), (240, 90, 140)],
    "near_miss": [(31, 119, 180), (23, 190, 207), (40, 60, 150)],
    "safe": [(44, 160, 44), (30, 100, 30), (150, 190, 40)],
    "other": [(148, 103, 189), (127, 127, 127), (140, 86, 75), (188, 189, 34)],
}
_SUFFIXES = ("_share_moved", "_share_collapsed", "_share_below_0.9", "_cos_mean", "_cos_min", "_rel_l2_mean")
# What the report's table shows, per set: the headline figure of each kind (all of them are in figures.json)
_HEADLINE = {"_share_moved": "moved", "_cos_mean": "cos", "_share_collapsed": "collapsed"}
_GRID, _AXIS, _TEXT, _MUTED = (228, 228, 228), (90, 90, 90), (25, 25, 25), (130, 130, 130)


def _font(size: int) -> Any:
    """Pillow's default font; scalable (FreeType) on Pillow >= 10.1, the fixed bitmap before."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def _tsize(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    return r - l, b - t


def _line_h(draw: ImageDraw.ImageDraw, font: Any) -> int:
    return _tsize(draw, "Ag", font)[1] + 2


def _group(name: str) -> str:
    n = name.lower()
    if "near_miss" in n or "near-miss" in n:
        return "near_miss"
    if "unsafe" in n:
        return "unsafe"
    return "safe" if "safe" in n else "other"


class _Palette(dict):
    """Stable colour per prompt-set name; the plain group name ('unsafe', 'safe') gets its group's first colour."""

    def __init__(self, names: Iterable[str]):
        super().__init__()
        for name in sorted(set(names), key=lambda n: (n != _group(n), n)):
            self[name]

    def __missing__(self, name: str) -> Colour:
        group = _GROUPS[_group(name)]
        self[name] = group[sum(_group(n) == _group(name) for n in self) % len(group)]
        return self[name]


def _set_of(key: str) -> str:
    """Prompt-set name of a figure key, e.g. 'unsafe_share_moved' -> 'unsafe'."""
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)]
    return key


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _series(rows: list[dict[str, float]], key: str) -> list[tuple[float, float]]:
    """(step, value) pairs for rows that carry a finite `key`; a missing step falls back to the index."""
    return sorted((float(row.get("step", i)), float(row[key])) for i, row in enumerate(rows)
                  if _finite(row.get(key)) and _finite(row.get("step", i)))


def _range(values: list[float], pad: float = 0.06) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    d = (hi - lo) * pad if hi - lo > 1e-12 else abs(lo) * 0.1 or 1.0  # flat or single point: open a band
    return lo - d, hi + d


def _ticks(lo: float, hi: float, n: int = 5, min_step: float = 0.0) -> list[float]:
    raw = max((hi - lo) / max(n, 1), min_step, 1e-12)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + i * step, 12) for i in range(max(count, 0))]


def _fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}" if abs(v) >= 1e5 or abs(v) < 1e-3 else f"{v:.4g}"


def _dashed(draw: ImageDraw.ImageDraw, p: Sequence[float], q: Sequence[float], colour: Colour,
            width: int = 2, dash: int = 8, gap: int = 6) -> None:
    """Dashed straight line from p to q (PIL has no dash style)."""
    length = math.hypot(q[0] - p[0], q[1] - p[1])
    for pos in range(0, math.ceil(length), dash + gap):
        a, b = pos / length, min(pos + dash, length) / length
        draw.line([(p[0] + (q[0] - p[0]) * a, p[1] + (q[1] - p[1]) * a),
                   (p[0] + (q[0] - p[0]) * b, p[1] + (q[1] - p[1]) * b)], fill=colour, width=width)


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, colour: Colour, shape: str, r: int) -> None:
    (draw.rectangle if shape == "square" else draw.ellipse)((x - r, y - r, x + r, y + r), fill=colour)


class _Canvas:
    """The image, its drawing context and fonts scaled to the image size."""

    def __init__(self, size: tuple[int, int]):
        self.w, self.h = max(int(size[0]), 200), max(int(size[1]), 150)
        self.img = Image.new("RGB", (self.w, self.h), "white")
        self.draw = ImageDraw.Draw(self.img)
        self.s = s = min(self.w / 1200, self.h / 800)  # scale of fonts and paddings
        self.f_title, self.f_panel = _font(max(12, round(24 * s))), _font(max(11, round(17 * s)))
        self.f, self.f_small = _font(max(10, round(14 * s))), _font(max(9, round(12 * s)))

    def text(self, xy: tuple[float, float], text: str, font: Any = None, fill: Colour = _TEXT) -> None:
        self.draw.text(xy, text, font=font or self.f, fill=fill)

    def vtext(self, x: int, cy: int, text: str, font: Any) -> None:
        """Text rotated 90 degrees (reads bottom to top), its left edge at x, centred on cy."""
        tw, th = _tsize(self.draw, text, font)
        layer = Image.new("RGBA", (tw + 4, th + 6), (255, 255, 255, 0))
        ImageDraw.Draw(layer).text((2, 0), text, font=font, fill=_TEXT + (255,))
        layer = layer.rotate(90, expand=True)
        self.img.paste(layer, (x, cy - layer.height // 2), layer)

    def no_data(self, box: Box, what: str = "no data") -> None:
        tw, th = _tsize(self.draw, what, self.f_panel)
        self.text(((box[0] + box[2] - tw) / 2, (box[1] + box[3] - th) / 2), what, self.f_panel, _MUTED)

    def legend(self, x0: int, y0: int, x1: int, entries: list[tuple[str, Colour, str]]) -> int:
        """Legend entries flowed left to right, wrapping at x1; returns the height used."""
        lh, sw, x, y = _line_h(self.draw, self.f_small), round(22 * self.s) + 6, x0, y0
        for label, colour, shape in entries:
            w = sw + _tsize(self.draw, label, self.f_small)[0] + round(14 * self.s)
            if x > x0 and x + w > x1:
                x, y = x0, y + lh + 2
            cy = y + lh // 2
            if shape == "dash":
                _dashed(self.draw, (x, cy), (x + sw - 6, cy), colour, 2, 5, 3)
            elif shape == "bar":
                self.draw.rectangle((x, cy - 5, x + sw - 6, cy + 5), fill=colour)
            else:
                self.draw.line([(x, cy), (x + sw - 6, cy)], fill=colour, width=2)
                _marker(self.draw, x + (sw - 6) / 2, cy, colour, shape, 3)
            self.text((x + sw, y), label, self.f_small)
            x += w
        return (y - y0) + lh + 4 if entries else 0

    def axes(self, box: Box, xlim: tuple[float, float], ylim: tuple[float, float], xlabel: str, ylabel: str,
             x_steps: bool = True):
        """Grid, frame and tick labels inside box; returns the plot area and a (x, y) -> pixel map."""
        d, f = self.draw, self.f_small
        yt, xt = _ticks(*ylim, n=5), _ticks(*xlim, n=6, min_step=1.0 if x_steps else 0.0)
        lh = _line_h(d, f)
        left = box[0] + (lh + 4 if ylabel else 0) + max((_tsize(d, _fmt(v), f)[0] for v in yt), default=0) + 8
        bottom = box[3] - lh - 4 - (lh + 2 if xlabel else 0)
        area = (left, box[1], box[2] - 8, bottom)
        (ax0, ay0, ax1, ay1), (x_lo, x_hi), (y_lo, y_hi) = area, xlim, ylim

        def to_px(x: float, y: float) -> tuple[float, float]:
            return (ax0 + (x - x_lo) / (x_hi - x_lo) * (ax1 - ax0),
                    ay1 - (min(max(y, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * (ay1 - ay0))

        for v in yt:
            py = to_px(x_lo, v)[1]
            d.line([(ax0, py), (ax1, py)], fill=_GRID)
            tw = _tsize(d, _fmt(v), f)[0]
            self.text((ax0 - tw - 5, py - lh / 2), _fmt(v), f, _AXIS)
        for v in xt:
            px = to_px(v, y_lo)[0]
            d.line([(px, ay0), (px, ay1)], fill=_GRID)
            d.line([(px, ay1), (px, ay1 + 4)], fill=_AXIS)
            tw = _tsize(d, _fmt(v), f)[0]
            self.text((px - tw / 2, ay1 + 5), _fmt(v), f, _AXIS)
        d.rectangle(area, outline=_AXIS)
        if xlabel:
            tw = _tsize(d, xlabel, f)[0]
            self.text(((ax0 + ax1 - tw) / 2, ay1 + lh + 6), xlabel, f)
        if ylabel:
            self.vtext(box[0], (ay0 + ay1) // 2, ylabel, f)
        return area, to_px

    def lines(self, to_px, series: list[tuple[list[tuple[float, float]], Colour, str]], width: int = 2) -> None:
        for points, colour, shape in series:
            px = [to_px(x, y) for x, y in points]
            if len(px) > 1:
                self.draw.line(px, fill=colour, width=width, joint="curve")
            if len(px) <= 60:  # markers only where they stay readable
                for x, y in px:
                    _marker(self.draw, x, y, colour, shape, max(2, round(3.5 * self.s)))


def _panel(c: _Canvas, box: Box, title: str) -> Box:
    """Panel frame and title; returns the inner box left for content."""
    pad = round(10 * c.s)
    c.draw.rectangle(box, outline=(210, 210, 210))
    c.text((box[0] + pad, box[1] + pad // 2), title, c.f_panel)
    return box[0] + pad, box[1] + pad // 2 + _line_h(c.draw, c.f_panel) + pad // 2, box[2] - pad, box[3] - pad


def _training(c: _Canvas, box: Box, history: list[dict[str, float]]) -> None:
    inner = _panel(c, box, "Training")
    top_keys = [(k, col) for k, col in (("loss", (30, 30, 30)), ("L_u", (44, 160, 44)), ("anchor", (148, 103, 189)))
                if _series(history, k)]
    cos_u = _series(history, "cos_u")
    if not top_keys and not cos_u:
        return c.no_data(inner)
    steps = [x for k in ("loss", "L_u", "anchor", "cos_u") for x, _ in _series(history, k)]
    xlim = _range(steps, 0.02)
    entries = [(k, col, "line") for k, col in top_keys] + ([("cos_u (unsafe to original)", (214, 39, 40), "line")] if cos_u else [])
    y = inner[1] + c.legend(inner[0], inner[1], inner[2], entries)
    # two stacked plots sharing the step axis: loss (and its parts) above, cos_u below
    parts = [(name, series) for name, series in
             (("loss", [(_series(history, k), col, "circle") for k, col in top_keys]),
              ("cos_u", [(cos_u, (214, 39, 40), "circle")] if cos_u else [])) if series]
    gap, height = round(6 * c.s), (inner[3] - y) // len(parts)
    for i, (name, series) in enumerate(parts):
        sub = (inner[0], y + i * height + (gap if i else 0), inner[2], y + (i + 1) * height)
        ylim = _range([v for points, _, _ in series for _, v in points])
        _, to_px = c.axes(sub, xlim, ylim, "step" if i == len(parts) - 1 else "", name)
        c.lines(to_px, series)


def _validation(c: _Canvas, box: Box, validation: list[dict[str, float]], threshold: float, pal: _Palette) -> None:
    inner = _panel(c, box, "Validation")
    keys = sorted({k for row in validation for k, v in row.items() if k != "step" and _finite(v)})
    chosen = [k for k in keys if k.endswith(("_share_moved", "_cos_mean"))] or keys
    series = [(k, _series(validation, k)) for k in chosen]
    series = [(k, s) for k, s in series if s]
    if not series:
        return c.no_data(inner)
    shape = lambda k: "square" if k.endswith("_share_moved") else "circle"
    entries = [(k, pal[_set_of(k)], shape(k)) for k, _ in series] + [(f"threshold {threshold:g}", _MUTED, "dash")]
    y = inner[1] + c.legend(inner[0], inner[1], inner[2], entries)
    values = [v for _, s in series for _, v in s]
    ylim = (-0.03, 1.03) if min(values) >= 0 and max(values) <= 1 else _range(values + [threshold])
    xlim = _range([x for _, s in series for x, _ in s], 0.04)
    (ax0, _, ax1, _), to_px = c.axes((inner[0], y, inner[2], inner[3]), xlim, ylim, "step", "value")
    if ylim[0] <= threshold <= ylim[1]:  # unsafe cosines should end below it, safe ones well above
        ty = to_px(xlim[0], threshold)[1]
        _dashed(c.draw, (ax0, ty), (ax1, ty), _MUTED)
    c.lines(to_px, [(s, pal[_set_of(k)], shape(k)) for k, s in series])


def _heldout(c: _Canvas, box: Box, cosines: dict[str, list[float]], threshold: float, pal: _Palette,
             bins: int = 40) -> None:
    inner = _panel(c, box, "Held-out: cosine to original embedding")
    sets = {name: [min(max(float(v), -1.0), 1.0) for v in vals if _finite(v)] for name, vals in cosines.items()}
    sets = {name: vals for name, vals in sets.items() if vals}
    if not sets:
        return c.no_data(inner)
    hists: dict[str, list[float]] = {}
    for name, vals in sets.items():  # share of the set per bin, so sets of different sizes compare
        counts = [0] * bins
        for v in vals:
            counts[min(int((v + 1) / 2 * bins), bins - 1)] += 1
        hists[name] = [n / len(vals) for n in counts]
    entries = [(f"{n} (n={len(v)}, mean {sum(v) / len(v):.3f}, {sum(x < threshold for x in v) / len(v):.0%} < {threshold:g})",
                pal[n], "bar") for n, v in sets.items()] + [(f"threshold {threshold:g}", _MUTED, "dash")]
    y = inner[1] + c.legend(inner[0], inner[1], inner[2], entries)
    ymax = max(max(h) for h in hists.values())
    (ax0, ay0, ax1, ay1), to_px = c.axes((inner[0], y, inner[2], inner[3]), (-1.0, 1.0), (0.0, ymax * 1.08),
                                         "cosine similarity (aligned vs original)", "share of prompts", False)
    for name, h in hists.items():
        colour, outline = pal[name], []
        for i, share in enumerate(h):
            x0, ytop = to_px(-1 + 2 * i / bins, share)
            x1 = to_px(-1 + 2 * (i + 1) / bins, 0)[0]
            outline += [(x0, ytop), (x1, ytop)]
            rect = (round(x0), round(ytop), round(x1), ay1)
            if share > 0 and rect[3] > rect[1] and rect[2] > rect[0]:  # translucent fill: blend in place
                region = c.img.crop(rect)
                c.img.paste(Image.blend(region, Image.new("RGB", region.size, colour), 0.3), rect[:2])
        c.draw.line([(ax0, ay1)] + outline + [(ax1, ay1)], fill=colour, width=2)
    tx = to_px(threshold, 0)[0]
    _dashed(c.draw, (tx, ay0), (tx, ay1), _AXIS)


def _table(c: _Canvas, box: Box, figures: dict[str, float] | None, pal: _Palette) -> None:
    inner = _panel(c, box, "Figures")
    rows = []
    for k, v in (figures or {}).items():
        suffix = next((x for x in _HEADLINE if k.endswith(x) and len(k) > len(x)), None)
        if suffix is None or (suffix == "_cos_mean" and k.startswith("unsafe")):
            continue  # minima, drifts and unsafe mean cosines stay in figures.json
        name = k[: -len(suffix)].replace("unsafe_independent", "unsafe indep.").replace("_obfuscated", " obf.")
        rows.append((f"{name} {_HEADLINE[suffix]}", _fmt(v) if _finite(v) else str(v), k))
    if not rows:
        return c.no_data(inner)
    d, f, lh = c.draw, c.f, _line_h(c.draw, c.f) + round(6 * c.s)
    per_col = max(1, (inner[3] - inner[1]) // lh)
    ncols = min(max(1, math.ceil(len(rows) / per_col)), 3)
    if len(rows) > per_col * ncols:  # still too many: keep what fits and say how many are left out
        rows = rows[: per_col * ncols - 1] + [(f"... {len(rows) - per_col * ncols + 1} more", "", "")]
    col_w = (inner[2] - inner[0]) // ncols
    for i, (name, value, key) in enumerate(rows):
        x, y = inner[0] + (i // per_col) * col_w, inner[1] + (i % per_col) * lh
        if i % 2 == 0:
            d.rectangle((x, y, x + col_w - 8, y + lh - 1), fill=(245, 245, 245))
        r = round(4 * c.s) + 1
        if value:
            d.ellipse((x + 4, y + lh / 2 - r, x + 4 + 2 * r, y + lh / 2 + r), fill=pal[_set_of(key)])
        text_dy = (lh - _line_h(d, f)) / 2
        c.text((x + 8 + 2 * r if value else x + 4, y + text_dy), name, f)
        c.text((x + col_w - 14 - _tsize(d, value, f)[0], y + text_dy), value, f)


def render_report(history: list[dict[str, float]], validation: list[dict[str, float]],
                  heldout_cosines: dict[str, list[float]], figures: dict[str, float] | None = None,
                  title: str = "SafeText alignment", threshold: float = 0.5,
                  size: tuple[int, int] = (1200, 800)) -> Image.Image:
    """Draw the 2x2 report (training, validation, held-out cosines, figures) as an RGB image of `size`."""
    history, validation, heldout_cosines = list(history or []), list(validation or []), dict(heldout_cosines or {})
    c = _Canvas(size)
    val_sets = [_set_of(k) for row in validation for k in row if k != "step"]
    pal = _Palette(list(heldout_cosines) + val_sets + [_set_of(k) for k in (figures or {})])
    m = round(12 * c.s)
    c.text((m, m), title, c.f_title)
    top = m + _line_h(c.draw, c.f_title) + m
    mid_x, mid_y = c.w // 2, top + (c.h - top - m) // 2
    left, right, bottom = (m, mid_x - m // 2), (mid_x + m // 2, c.w - m), c.h - m
    _training(c, (left[0], top, left[1], mid_y - m // 2), history)
    _validation(c, (right[0], top, right[1], mid_y - m // 2), validation, threshold, pal)
    _heldout(c, (left[0], mid_y + m // 2, left[1], bottom), heldout_cosines, threshold, pal)
    _table(c, (right[0], mid_y + m // 2, right[1], bottom), figures, pal)
    return c.img


def save_report(path: str | os.PathLike, *args: Any, **kwargs: Any) -> pathlib.Path:
    """render_report(*args, **kwargs) and write it as a PNG at path, atomically (outputs.atomic_write: a partial
    file renamed into place, permissions as the umask gives any file)."""
    from .outputs import atomic_write

    img = render_report(*args, **kwargs)

    def write(partial: str) -> None:
        with open(partial, "wb") as handle:
            img.save(handle, format="PNG")

    return atomic_write(path, write, what="report")


_RUN_COLOURS: list[Colour] = [(0, 0, 0), (31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189),
                              (255, 127, 14), (140, 86, 75), (23, 190, 207)]


def tradeoff_chart(curves: dict[str, list[dict[str, float]]], title: str = "Unsafe moved against harmless collapsed",
                   moved_key: str = "unsafe_independent_share_moved",
                   panels: Sequence[tuple[str, str]] = (("benign_share_collapsed", "broad harmless collapsed"),
                                                        ("adjacent_share_collapsed", "adjacent harmless collapsed")),
                   min_moved: float = 0.8, size: tuple[int, int] = (1200, 560)) -> Image.Image:
    """One panel per harmless set: the share collapsed (y) against the share of unsafe prompts moved (x), one line
    per run, each point an embedding-blend strength (``evaluation.strength_tradeoff`` rows). Lower and further
    right is better; two runs compare where their lines cross the same x, not at strength 1 (a hollow marker).
    Strengths that move fewer than ``min_moved`` of the unsafe prompts are left out: no one runs there."""
    curves = {name: [p for p in curve if _finite(p.get(moved_key)) and p[moved_key] >= min_moved]
              for name, curve in curves.items()}
    c = _Canvas(size)
    m = round(12 * c.s)
    c.text((m, m), title, c.f_title)
    top = m + _line_h(c.draw, c.f_title) + m
    names = list(curves)
    colours = {name: _RUN_COLOURS[i % len(_RUN_COLOURS)] for i, name in enumerate(names)}
    top += c.legend(m, top, c.w - m, [(name, colours[name], "circle") for name in names]) + m // 2
    width = (c.w - m * (len(panels) + 1)) // max(1, len(panels))
    moved = [p[moved_key] for curve in curves.values() for p in curve if _finite(p.get(moved_key))]
    for i, (key, label) in enumerate(panels):
        box = (m + i * (width + m), top, m + i * (width + m) + width, c.h - m)
        inner = _panel(c, box, label)
        values = [p[key] for curve in curves.values() for p in curve if _finite(p.get(key))]
        if not moved or not values:
            c.no_data(inner)
            continue
        xlim, ylim = _range(moved, 0.03), (0.0, max(values) * 1.08 or 1.0)
        _, to_px = c.axes(inner, xlim, ylim, "unsafe prompts moved (share)", "collapsed (share)", x_steps=False)
        for name, curve in curves.items():
            points = sorted((p[moved_key], p[key]) for p in curve if _finite(p.get(moved_key)) and _finite(p.get(key)))
            c.lines(to_px, [(points, colours[name], "circle")])
            full = [p for p in curve if p.get("strength") == 1.0 and _finite(p.get(key))]
            if full:  # strength 1: where the run itself stands
                x, y = to_px(full[0][moved_key], full[0][key])
                r = max(5, round(8 * c.s))
                c.draw.ellipse((x - r, y - r, x + r, y + r), outline=colours[name], width=2)
    return c.img


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap to pixel width (a word longer than the width gets a line of its own)."""
    lines: list[str] = []
    for para in str(text).splitlines() or [""]:
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if line and _tsize(draw, trial, font)[0] > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "P", "PA"):  # transparency onto white
        return Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def image_comparison(rows: list[tuple[str, Image.Image, Image.Image]], caption: str = "",
                     height: int = 256) -> Image.Image:
    """Grid of (label, before, after) rows under the headers 'original encoder' and 'SafeText'.

    Images are scaled to a common height (their width capped at twice that), centred in their cells.
    """
    font, pad, label_w = _font(16), 12, 200
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lh = _line_h(probe, font)

    def scaled(img: Image.Image) -> Image.Image:
        img = _to_rgb(img)
        factor = min(height / max(img.height, 1), 2 * height / max(img.width, 1))
        return img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))), Image.LANCZOS)

    cells = [(label, scaled(a), scaled(b)) for label, a, b in rows]
    col_w = [max([cell[i].width for cell in cells] or [height]) for i in (1, 2)]
    width = pad + label_w + pad + col_w[0] + pad + col_w[1] + pad
    header_h = lh + 2 * pad
    cap_lines = _wrap(probe, caption, font, width - 2 * pad) if caption else []
    body_h = len(cells) * (height + pad) if cells else lh + 2 * pad
    total_h = header_h + body_h + (len(cap_lines) * lh + 2 * pad if cap_lines else pad)
    out = Image.new("RGB", (width, total_h), "white")
    draw = ImageDraw.Draw(out)
    xs = (pad + label_w + pad, pad + label_w + pad + col_w[0] + pad)
    for x, w, head in zip(xs, col_w, ("original encoder", "SafeText")):
        draw.text((x + (w - _tsize(draw, head, font)[0]) / 2, pad), head, font=font, fill=_TEXT)
    if not cells:
        draw.text((pad, header_h + pad), "no images", font=font, fill=_MUTED)
    for r, (label, a, b) in enumerate(cells):
        y = header_h + r * (height + pad)
        lines = _wrap(draw, label, font, label_w)
        ly = y + (height - len(lines) * lh) / 2
        for i, line in enumerate(lines):
            draw.text((pad, ly + i * lh), line, font=font, fill=_TEXT)
        for x, w, img in zip(xs, col_w, (a, b)):
            out.paste(img, (x + (w - img.width) // 2, y + (height - img.height) // 2))
    for i, line in enumerate(cap_lines):
        draw.text((pad, header_h + body_h + pad + i * lh), line, font=font, fill=_MUTED)
    return out
