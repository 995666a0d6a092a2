"""SafeText benchmark suite: cost figures measured as ratios, side by side, in one run.

Run from the repository root with ``python -m benchmarks`` (or ``python benchmarks/run.py``); see
``docs/benchmarks.md``. Every model has its full-size architecture (SD 1.5's CLIP-L, UNet and VAE)
with random weights built from configs, so nothing is downloaded. Results go to
``benchmarks/results/<device-tag>.json`` and ``.md``.
"""
