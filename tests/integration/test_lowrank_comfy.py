"""Low-rank SafeText files through a real ComfyUI's own LoRA code (no server): ``comfy.lora.model_lora_keys_clip``,
``comfy.lora_convert.convert_lora``, ``comfy.lora.load_lora`` and ``comfy.lora.calculate_weight``, the functions
stock ``LoraLoader`` runs (``comfy.sd.load_lora_for_models``), called in ComfyUI's own Python on the CLIP weights
of tiny SD 1.x, SD 2.x and SDXL checkpoints. Checks: no "lora key not loaded" warning, every weight SafeText changes
is patched and nothing else, and the patched weights equal SafeText's weight blend at strength 1.

Run with ``COMFYUI_PATH`` pointing to a ComfyUI checkout (``COMFYUI_PYTHON``: its Python, default
``$COMFYUI_PATH/../venv/bin/python``); skipped otherwise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiny_models  # noqa: E402
from comfy_server import comfy_python  # noqa: E402
from safetext_core import AlignConfig, SafeTextFile, load_encoders, run_alignment  # noqa: E402
from safetext_core.weights import shifted  # noqa: E402

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
pytestmark = pytest.mark.skipif(not COMFYUI_PATH, reason="COMFYUI_PATH is not set: no ComfyUI checkout to test against")

CHILD = r'''
import json, logging, sys
sys.argv = ["safetext-lowrank-check", "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.lora, comfy.lora_convert, comfy.utils
from safetensors.torch import load_file, save_file

lora_path, base_path, out_path = sys.argv[1:] if len(sys.argv) > 3 else __ARGS__
base = load_file(base_path)

class CondStage(torch.nn.Module):  # what model_lora_keys_clip reads of a CLIP: its state dict's keys
    def state_dict(self, *args, **kwargs):
        return base

warnings = []
class Catch(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger().addHandler(Catch())
key_map = comfy.lora.model_lora_keys_clip(CondStage(), {})
lora = comfy.lora_convert.convert_lora(comfy.utils.load_torch_file(lora_path, safe_load=True))
loaded = comfy.lora.load_lora(lora, key_map)
out = {key: comfy.lora.calculate_weight([(1.0, patch, 1.0, None, None)], base[key].clone(), key).contiguous()
       for key, patch in loaded.items()}
save_file(out, out_path)
print(json.dumps({"not_loaded": [w for w in warnings if "not loaded" in w], "patched": sorted(loaded)}))
'''


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_stock_lora_code_loads_low_rank_files(family, tmp_path, prompt_sets):
    states = tiny_models.write_single_file(tmp_path / "m.safetensors", family)
    encoders = load_encoders(tmp_path / "m.safetensors")
    config = AlignConfig(steps=4, batch_size=4, rank=4, lora_learning_rate=2e-2, eval_every=0)
    path = tmp_path / "low.safetensors"
    run_alignment(encoders, prompt_sets, config, output=path, draw=False)
    file = SafeTextFile.load(path)
    base = {f"{e}.transformer.{k}": v.float().contiguous() for e, state in states.items() for k, v in state.items()}
    save_file(base, str(tmp_path / "base.safetensors"))
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("__ARGS__", repr([str(path), str(tmp_path / "base.safetensors"),
                                                      str(tmp_path / "out.safetensors")])))
    done = subprocess.run([comfy_python(COMFYUI_PATH), str(script)], cwd=COMFYUI_PATH, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=COMFYUI_PATH))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["not_loaded"] == []
    expected = {f"{e}.transformer.{p}" for e, params in file.deltas.items() for p in params}
    assert set(report["patched"]) == expected
    patched = load_file(str(tmp_path / "out.safetensors"))
    for key, value in patched.items():
        encoder, param = key.split(".transformer.", 1)
        ours = shifted(base[key], file.deltas[encoder][param], 1.0)
        assert torch.allclose(value, ours, atol=1e-6, rtol=1e-5), key
