#!/usr/bin/env bash
# The main job: set up, then align a text encoder. With no arguments it aligns the embedded default
# (the real pretrained MiniLM-L6) on the shipped prompt sets and prints its held-out figures.
# Any arguments go to `safetext align` (e.g. --checkpoint model.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m safetext_core align "$@"
