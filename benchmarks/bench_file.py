"""file_size_and_load: the SafeText file against the encoder it modifies, and its low-rank export.

* Size and load time of a SafeText file (``SafeTextFile.save`` / ``SafeTextFile.load``, which also
  validates names, dtypes and finiteness) against SD 1.5's CLIP-L saved as a plain safetensors file
  (float32, as ``save_pretrained`` writes it) and read with ``safetensors.torch.load_file``. Loads are
  timed warm (file in the page cache, after one uncounted load): the figure is parsing and checking,
  not the disk.
* The low-rank export (``safetext_core.exports.to_lowrank``) at several ranks: file size against the
  full SafeText file, and the relative Frobenius error the export reports.

Two kinds of deltas, because the low-rank error depends on their spectrum:
  random  - small Gaussian deltas for every CLIP parameter: full rank, the worst case;
  aligned - deltas from a short real run of ``safetext_core.run_alignment`` on the same random CLIP-L
            (shipped prompt sets when present, else templated ones).
"""
from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from .common import (SCRATCH_DIR, BenchResult, Options, Row, clip_l_encoder_set, fmt_bytes, fmt_seconds, median,
                     prompt_sets, time_call)

NAME = "file_size_and_load"


def _load_time(fn: Any, repeats: int) -> float:
    return median(time_call(fn, "cpu", 1, repeats))


def measure_file(file: Any, label: str, folder: Path, encoder_size: int, encoder_load: float,
                 encoder_checked: float, opts: Options, raw: dict[str, Any]) -> list[Row]:
    """Rows for one SafeText file: size and load time against the encoder, then each low-rank export."""
    from safetext_core import SafeTextFile
    from safetext_core.exports import to_lowrank

    path = file.save(folder / f"{label}.safetext.safetensors")
    size = path.stat().st_size
    load = _load_time(lambda: SafeTextFile.load(path), opts.load_repeats)
    tensors = sum(len(d) for d in file.deltas.values())
    entry: dict[str, Any] = {"bytes": size, "load_s": load, "tensors": tensors, "parameters": file.parameter_count(),
                             "lowrank": {}}
    conditions = f"{tensors} delta tensors, {file.parameter_count():,} values, fp32; warm page cache, median of {opts.load_repeats}"
    rows = [
        Row(NAME, f"SafeText file size ({label} deltas) vs CLIP-L encoder safetensors (fp32)",
            f"{fmt_bytes(size)} vs {fmt_bytes(encoder_size)}", size / encoder_size, "-", None, conditions),
        Row(NAME, f"`SafeTextFile.load` ({label}) vs `safetensors.torch.load_file` of the encoder",
            f"{fmt_seconds(load)} vs {fmt_seconds(encoder_load)}", load / encoder_load, "-", None,
            conditions + "; load_file maps the file and reads no value until used"),
        Row(NAME, f"`SafeTextFile.load` ({label}) vs `load_file` + the same finiteness check on every tensor",
            f"{fmt_seconds(load)} vs {fmt_seconds(encoder_checked)}", load / encoder_checked, "-", None,
            conditions + "; SafeTextFile.load checks every value with torch.isfinite"),
    ]
    for rank in opts.ranks:
        start = time.perf_counter()
        low_path, figures = to_lowrank(file, folder / f"{label}.r{rank}.safetensors", rank)
        export_s = time.perf_counter() - start
        low_size = low_path.stat().st_size
        low_load = _load_time(lambda: SafeTextFile.load(low_path), max(1, opts.load_repeats // 2))
        entry["lowrank"][rank] = {"bytes": low_size, "export_s": export_s, "load_s": low_load, **figures}
        rows.append(Row(
            NAME + " (low-rank)", f"rank-{rank} export vs full SafeText file ({label} deltas)",
            f"{fmt_bytes(low_size)} vs {fmt_bytes(size)}; relative error {figures['relative_error']:.3f} "
            f"(worst tensor {figures['max_tensor_error']:.3f}); export {fmt_seconds(export_s)}, load {fmt_seconds(low_load)}",
            low_size / size, "-", None, "size ratio; error = ||delta - up@down||_F / ||delta||_F over all tensors"))
        low_path.unlink()
    path.unlink()
    raw[label] = entry
    return rows


def run(opts: Options) -> BenchResult:
    from safetensors.torch import load_file, save_file

    from safetext_core import AlignConfig, SafeTextFile, run_alignment

    folder = SCRATCH_DIR / "file_bench"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    raw: dict[str, Any] = {}
    try:
        encoders = clip_l_encoder_set(opts.quick, opts.seed)
        model = encoders.models["clip_l"]
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
        encoder_path = folder / "clip_l.safetensors"
        save_file(state, str(encoder_path))
        encoder_size = encoder_path.stat().st_size
        encoder_load = _load_time(lambda: load_file(str(encoder_path)), opts.load_repeats)
        # load_file is lazy (memory-mapped); reading every value once, as SafeTextFile.load's check does,
        # gives the fair comparison for what SafeText adds beyond validation.
        encoder_checked = _load_time(lambda: [bool(torch.isfinite(t).all()) for t in load_file(str(encoder_path)).values()],
                                     opts.load_repeats)
        raw["encoder"] = {"bytes": encoder_size, "load_s": encoder_load, "load_and_check_s": encoder_checked,
                          "tensors": len(state)}
        fingerprints = encoders.fingerprints()

        generator = torch.Generator().manual_seed(opts.seed)
        random_deltas = {k: 1e-3 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
        random_file = SafeTextFile(family="sd1", deltas={"clip_l": random_deltas}, fingerprints=fingerprints,
                                   base_name="random CLIP-L (benchmark)")
        rows = measure_file(random_file, "random", folder, encoder_size, encoder_load, encoder_checked, opts, raw)
        del random_file, random_deltas, state
        gc.collect()

        prompts, source = prompt_sets()
        config = AlignConfig(steps=opts.real_steps, eval_every=0, early_stop=False, seed=opts.seed)
        start = time.perf_counter()
        outcome = run_alignment(encoders, prompts, config, device=opts.device, draw=False,
                                base_name="random CLIP-L (benchmark)")
        raw["alignment"] = {"steps": opts.real_steps, "prompts": source, "seconds": time.perf_counter() - start,
                            "heldout": outcome.heldout}
        aligned_rows = measure_file(outcome.file, "aligned", folder, encoder_size, encoder_load, encoder_checked,
                                    opts, raw)
        note = f"; deltas from {opts.real_steps} real alignment steps ({source.split(' ')[0]} prompts)"
        for row in aligned_rows:
            row.conditions += note
        rows += aligned_rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return BenchResult(NAME, rows, raw)
