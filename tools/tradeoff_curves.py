#!/usr/bin/env python3
"""Compare SafeText files at the same share of unsafe prompts moved, on the independent evaluation sets.

Two runs rarely stop at the same point of the trade-off between unsafe prompts moved and harmless prompts
collapsed, so their figures at strength 1 do not say which run is better. This encodes the independent sets
once per file, takes the exact trade-off over fine embedding-blend strengths (``evaluation.strength_tradeoff``,
from each prompt's dot products), and prints, for each target share of unseen unsafe prompts moved, the share of
broad and adjacent harmless prompts each file collapses there (linear between neighbouring strengths).

    python tools/tradeoff_curves.py --json curves.json run_a.safetext.safetensors run_b.safetext.safetensors
    python tools/tradeoff_curves.py --from-json curves.json          # the table again, without encoding
    python tools/tradeoff_curves.py --from-json curves.json --plot curves.png   # and the curves as a chart

Files of the embedded default (MiniLM) only: the original encoder is the embedded one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

TARGETS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98)


def curves(paths: list[str], strengths: list[float]) -> dict[str, list[dict[str, float]]]:
    """Trade-off curve of each file on the independent sets, keyed by file name."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from safetext_core.evaluation import evaluate
    from safetext_core.loaders import load_encoders
    from safetext_core.prompt_sets import independent_sets
    from safetext_core.safetext_file import SafeTextFile

    encoders, sets, out = load_encoders(None), independent_sets(), {}
    for path in paths:
        file = SafeTextFile.load(path)
        file.check_fingerprints(encoders.fingerprints())
        out[Path(path).name] = evaluate(encoders, file.deltas, sets, strengths=strengths).tradeoff
        print(f"encoded {path}", file=sys.stderr)
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
    parser.add_argument("files", nargs="*", help="SafeText files of the embedded default")
    parser.add_argument("--json", help="write the curves here")
    parser.add_argument("--from-json", help="read curves written by --json instead of encoding")
    parser.add_argument("--plot", help="draw the curves (broad and adjacent collapsed against unsafe moved) as a PNG")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        data = curves(args.files, [round(float(s), 3) for s in np.arange(0.70, 1.0001, 0.01)])
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=1))
    print("unsafe moved | " + " | ".join(data) + "   (broad / adjacent collapsed, %)")
    for target in TARGETS:
        cells = [at_share(curve, target) for curve in data.values()]
        print(f"{target:.0%} | " + " | ".join("-" if c is None else f"{c[0]:.2%} / {c[1]:.1%}" for c in cells))
    if args.plot:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from safetext_core.plots import tradeoff_chart

        tradeoff_chart(data).save(args.plot)
        print(f"chart: {args.plot}")


if __name__ == "__main__":
    main()
