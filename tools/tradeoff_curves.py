#!/usr/bin/env python3
"""Compare SafeText files at the same share of unsafe prompts moved, on the independent evaluation sets.

Two runs rarely stop at the same point of the trade-off between unsafe prompts moved and harmless prompts
collapsed, so their figures at strength 1 do not say which run is better. This encodes the independent sets
once per file, takes the exact trade-off over fine embedding-blend strengths (``evaluation.strength_tradeoff``,
from each prompt's dot products), and prints, for each target share of unseen unsafe prompts moved, the share of
broad and adjacent harmless prompts each file collapses there (linear between neighbouring strengths).

    python tools/tradeoff_curves.py --json curves.json run_a.safetext.safetensors run_b.safetext.safetensors
    python tools/tradeoff_curves.py --from-json curves.json          # the table again, without encoding
    python tools/tradeoff_curves.py --from-json a.json b.json        # several curve files side by side
    python tools/tradeoff_curves.py --from-json curves.json --plot curves.png   # and the curves as a chart
    python tools/tradeoff_curves.py --rank 16 --keep-other full.safetext.safetensors  # what a LoRA of it keeps
    python tools/tradeoff_curves.py --average seed0.safetext.safetensors seed1... seed2...  # and their mean change

With ``--rank R`` each full-weight file is also measured as the low-rank file compression would make of it (the
block projections' changes cut to rank R, everything else left out, ``lowrank.compress``); ``--keep-other`` adds
that cut with the other changes (token embeddings, norms, biases) kept, which no host's LoRA loader applies: the
difference between the two is what leaving them out costs. With ``--average`` the mean of the files' changes (a
"model soup" of runs that differ only in their seed) is measured as one more curve.

The files are read against the embedded default (MiniLM) unless ``--checkpoint`` names the one they were trained for
(a transformers folder or a checkpoint, as ``safetext align --checkpoint``): its fingerprint must match theirs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TARGETS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98)


def variants(deltas: dict, model, rank: int, keep_other: bool) -> dict[str, dict]:
    """``{label: changes}``: the file's own, its rank-``rank`` compression and (``keep_other``) that with the changes
    compression leaves out."""
    from safetext_core.lowrank import DEFAULT_TARGETS, check_targets, compress, expand

    out = {"": deltas}
    if rank > 0:
        weights = [name + ".weight" for name in check_targets(model, DEFAULT_TARGETS)]
        cut = {name: expand(*f) for name, f in compress(deltas, weights, rank).items()}
        out[f" rank {rank}"] = cut
        if keep_other:
            out[f" rank {rank} + other changes"] = {**{k: v for k, v in deltas.items() if k not in weights}, **cut}
    return out


def mean_change(changes: list[dict]) -> dict:
    """The mean of several files' changes, parameter by parameter (float32); the files must change the same ones."""
    if not changes or any(set(c) != set(changes[0]) for c in changes):
        raise SystemExit("--average needs files that change the same parameters")
    return {k: sum(c[k].float() for c in changes) / len(changes) for k in changes[0]}


def curves(paths: list[str], strengths: list[float], rank: int = 0, keep_other: bool = False,
           average: bool = False, checkpoint: str | None = None) -> dict[str, list[dict[str, float]]]:
    """Trade-off curve of each file on the independent sets, keyed by file name (and by variant, with ``rank``;
    with ``average``, also the mean of the files' changes). ``checkpoint``: the files' original encoder (``None``:
    the embedded default)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from safetext_core.evaluation import evaluate
    from safetext_core.loaders import load_encoders
    from safetext_core.prompt_sets import independent_sets
    from safetext_core.safetext_file import SafeTextFile

    encoders, sets, out, loaded = load_encoders(checkpoint), independent_sets(), {}, []
    for path in paths:
        file = SafeTextFile.load(path)
        file.check_fingerprints(encoders.fingerprints())
        (encoder, deltas), = file.deltas.items()
        if average:  # a full file's changes are ~90 MB: keep them only when they are averaged
            loaded.append(dict(deltas))
        for label, changes in variants(dict(deltas), encoders.models[encoder], rank, keep_other).items():
            out[Path(path).name + label] = evaluate(encoders, {encoder: changes}, sets, strengths=strengths).tradeoff
        print(f"encoded {path}", file=sys.stderr)
    if average:
        out[f"mean change of {len(paths)} files"] = evaluate(encoders, {encoder: mean_change(loaded)}, sets,
                                                             strengths=strengths).tradeoff
    return out


def at_share(curve: list[dict[str, float]], target: float) -> tuple[float, float] | None:
    """(broad, adjacent) share collapsed where the curve moves ``target`` of the unseen unsafe prompts."""
    moved = np.array([p["unsafe_independent_share_moved"] for p in curve])
    if moved.max() < target:
        return None
    return tuple(float(np.interp(target, moved, [p[k] for p in curve]))
                 for k in ("benign_share_collapsed", "adjacent_share_collapsed"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", help="SafeText files (of the embedded default unless --checkpoint)")
    parser.add_argument("--checkpoint", help="the encoder the files were trained for (a transformers folder or a "
                        "checkpoint, as safetext align --checkpoint); default: the embedded MiniLM")
    parser.add_argument("--json", help="write the curves here")
    parser.add_argument("--from-json", nargs="+", help="read curves written by --json (or by tools/classifier_bound.py) "
                        "instead of encoding; several files are shown side by side")
    parser.add_argument("--rank", type=int, default=0,
                        help="also measure each full-weight file compressed to this rank (its LoRA)")
    parser.add_argument("--keep-other", action="store_true",
                        help="with --rank: also the compressed file with the changes a LoRA leaves out kept")
    parser.add_argument("--average", action="store_true",
                        help="also measure the mean of the files' changes (a soup of runs that differ in their seed)")
    parser.add_argument("--plot", help="draw the curves (broad and adjacent collapsed against unsafe moved) as a PNG")
    parser.add_argument("--plot-max", type=float, default=1.0,
                        help="leave points that move more than this share of unsafe prompts out of the chart (a "
                        "detector's curve ends at 100%% far above the rest)")
    args = parser.parse_args(argv)
    if args.from_json:
        data = {}
        for path in args.from_json:
            data.update(json.loads(Path(path).read_text()))
    else:
        data = curves(args.files, [round(float(s), 3) for s in np.arange(0.70, 1.0001, 0.01)], args.rank,
                      args.keep_other, args.average, args.checkpoint)
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1))
    print("unsafe moved | " + " | ".join(data) + "   (broad / adjacent collapsed, %)")
    for target in TARGETS:
        cells = [at_share(curve, target) for curve in data.values()]
        print(f"{target:.0%} | " + " | ".join("-" if c is None else f"{c[0]:.2%} / {c[1]:.1%}" for c in cells))
    if args.plot:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from safetext_core.plots import tradeoff_chart

        shown = {name: [p for p in curve if p["unsafe_independent_share_moved"] <= args.plot_max]
                 for name, curve in data.items()}
        tradeoff_chart(shown).save(args.plot)
        print(f"chart: {args.plot}")


if __name__ == "__main__":
    main()
