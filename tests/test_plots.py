"""Tests for safetext_core.plots: report rendering, atomic saving, before/after comparison grid."""
from __future__ import annotations

import math
import os
import random
import sys

import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from safetext_core.plots import image_comparison, render_report, save_report  # noqa: E402


def _data(steps: int = 200, seed: int = 0):
    rnd = random.Random(seed)
    history = [{"step": s, "loss": 1.2 * math.exp(-s / 60) + rnd.gauss(0, 0.02), "L_u": 0.02 * (1 - math.exp(-s / 40)),
                "cos_u": 0.9 * math.exp(-s / 50) + 0.1, "anchor": 0.8 * math.exp(-s / 80)} for s in range(steps)]
    validation = [{"step": s, "unsafe_share_moved": 1 - math.exp(-s / 50), "safe_cos_mean": 0.99,
                   "near_miss_cos_mean": 0.96, "unsafe_cos_mean": 0.9 * math.exp(-s / 60) + 0.1}
                  for s in range(0, steps + 1, 25)]
    heldout = {"unsafe": [rnd.gauss(0.15, 0.1) for _ in range(200)],
               "unsafe_obfuscated": [rnd.gauss(0.3, 0.1) for _ in range(100)],
               "safe": [min(1.0, rnd.gauss(0.985, 0.01)) for _ in range(200)],
               "near_miss": [min(1.0, rnd.gauss(0.95, 0.02)) for _ in range(100)]}
    figures = {"unsafe_share_moved": 0.99, "safe_cos_mean": 0.985, "near_miss_cos_mean": 0.953, "steps": steps}
    return history, validation, heldout, figures


def _has_colour(img: Image.Image, box, test) -> bool:
    raw = img.crop(box).tobytes()
    return any(test(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3))


def test_render_report_size_mode_and_content():
    img = render_report(*_data(), threshold=0.5)
    assert img.mode == "RGB" and img.size == (1200, 800)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20
    # the held-out histograms sit in the bottom-left quarter: red (unsafe) and green (safe) must be there
    bottom_left = (0, 400, 600, 800)
    assert _has_colour(img, bottom_left, lambda r, g, b: r > 180 and g < 80 and b < 80)
    assert _has_colour(img, bottom_left, lambda r, g, b: g > 130 and r < 80 and b < 80)
    assert _has_colour(img, bottom_left, lambda r, g, b: b > 150 and r < 60)  # near_miss blue


@pytest.mark.parametrize("size", [(1200, 800), (640, 420), (1920, 1080)])
def test_render_report_respects_size(size):
    assert render_report(*_data(50), size=size).size == size


def test_render_report_empty_inputs():
    for args in (([], [], {}), ([], [], {}, None), ([], [], {"unsafe": []}, {})):
        img = render_report(*args)
        assert img.size == (1200, 800) and img.mode == "RGB"


def test_render_report_partial_and_degenerate_inputs():
    # one history point, missing keys, non-finite values, constant series, out-of-range cosines
    img = render_report([{"step": 0, "loss": 1.0}], [{"step": 0, "safe_cos_mean": 1.0}],
                        {"safe": [1.0], "unsafe": [float("nan"), 1.5, -3.0]}, {"x": float("inf"), "note": "ok"})
    assert img.size == (1200, 800)
    render_report([{"cos_u": 0.5}, {"cos_u": 0.5}], [{"step": 10, "safe_rel_l2_mean": 2.0}], {}, None)
    render_report([{"step": s, "loss": 3.0} for s in range(5)], [], {"other": [0.2, 0.3]}, {"a": 1e-7, "b": 123456.0})


def test_render_report_many_figures_fit():
    figures = {f"figure_{i}": i / 7 for i in range(200)}
    assert render_report([], [], {}, figures).size == (1200, 800)


def test_save_report_writes_png_atomically(tmp_path):
    target = tmp_path / "sub" / "report.png"
    out = save_report(target, *_data(30), title="test run")
    assert out == target and target.exists()
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size == (1200, 800)
    assert [p.name for p in target.parent.iterdir()] == ["report.png"]
    save_report(str(target), [], [], {})  # overwrite in place
    assert [p.name for p in target.parent.iterdir()] == ["report.png"]


def test_save_report_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    (tmp_path / "r.png").write_bytes(b"old")

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_report(tmp_path / "r.png", [], [], {})
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]
    assert (tmp_path / "r.png").read_bytes() == b"old"  # the previous report is untouched


def test_image_comparison_grows_with_rows():
    a = Image.new("RGB", (512, 512), (200, 40, 40))
    b = Image.new("RGBA", (768, 512), (40, 40, 200, 255))
    c = Image.new("L", (300, 600), 128)
    one = image_comparison([("unsafe prompt", a, b)], caption="seed 0")
    three = image_comparison([("unsafe prompt", a, b), ("safe prompt", b, c), ("a much longer label " * 4, c, a)],
                             caption="seed 0")
    assert one.mode == three.mode == "RGB"
    assert three.height > one.height and one.height >= 256
    empty = image_comparison([], caption="nothing rendered")
    assert empty.height < one.height


def test_tradeoff_chart_draws_each_run_in_each_panel_where_it_moves_enough():
    from safetext_core.plots import _RUN_COLOURS, tradeoff_chart

    def curve(slope):
        return [{"strength": s, "unsafe_independent_share_moved": u, "benign_share_collapsed": slope * (u - 0.5),
                 "adjacent_share_collapsed": 4 * slope * (u - 0.5)}
                for s, u in ((0.7, 0.3), (0.8, 0.85), (0.9, 0.93), (1.0, 0.97))]

    img = tradeoff_chart({"a": curve(0.02), "b": curve(0.01)}, size=(900, 420))
    assert img.size == (900, 420) and img.mode == "RGB"
    pixels = img.load()
    for columns in (range(0, 450), range(450, 900)):  # both runs' lines in both panels (a marker alone is ~60 pixels)
        half = [pixels[x, y] for y in range(420) for x in columns]
        assert half.count(_RUN_COLOURS[0]) > 250 and half.count(_RUN_COLOURS[1]) > 250
    empty = tradeoff_chart({"a": curve(0.02)}, min_moved=0.99)  # no strength moves 99%: says so, no crash
    assert empty.size == (1200, 560)
