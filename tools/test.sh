#!/usr/bin/env bash
# Set up, then run the test suite. Host integration tests run only when COMFYUI_PATH / A1111_PATH are set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest tests -q -rs "$@"
