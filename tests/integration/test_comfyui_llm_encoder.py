"""Issue 13 in a real ComfyUI over HTTP: Lumina 2's Gemma-2-2B at full size (random weights), through stock nodes.

ComfyUI's CLIPLoader (type ``lumina2``) builds Gemma-2-2B from its fixed config, so the encoder file is full size:
2.6 B parameters, 5.2 GB in bfloat16 (``comfy_text_encoders.py``, built once and cached). The server peaks at about
17 GiB while SafeText trains (ComfyUI's float16 copy plus SafeText's float32 copy, which the low-rank training copy
shares; originals recomputed) and the run takes about 6 minutes on a 2-core CPU, so the test is opt-in: ``SAFETEXT_FULL_WIDTH_HOSTS=1`` with
``COMFYUI_PATH``.

Over ``/prompt`` and ``/history``: SafeText Train (low rank, the way these encoders are aligned) runs a step on
the CLIP that CLIPLoader made and writes the file; then one workflow encodes a prompt with
CLIPTextEncodeLumina2 through the CLIP as loaded, SafeText Load & Apply off, on (embedding blend at 1 and 0.5,
weight blend at 1) and stock LoraLoader with the same file copied into models/loras, and a test-only node
(``comfy_probe``) saves each conditioning. Checks: off is bit for bit the original, on changes it, 0.5 is the exact
lerp, stock LoraLoader loads every tensor (no "lora key not loaded") and equals SafeText's weight blend.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import comfy_workflows as wf
from comfy_checkpoints import build_checkpoint, default_cache_dir
from comfy_server import ComfyServer, comfy_commit, running

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
FULL_WIDTH = os.environ.get("SAFETEXT_FULL_WIDTH_HOSTS") == "1"
pytestmark = pytest.mark.skipif(not (COMFYUI_PATH and FULL_WIDTH),
                                reason="set COMFYUI_PATH and SAFETEXT_FULL_WIDTH_HOSTS=1 to run a full-size Gemma-2-2B "
                                       "(5.2 GB file, about 17 GiB of memory) through a real ComfyUI")

HERE = Path(__file__).resolve().parent
GEMMA = "safetext-test-gemma2-2b.safetensors"
SD15 = "safetext-test-sd15.safetensors"  # stock LoraLoader needs a MODEL beside the CLIP: any checkpoint's
UNSAFE_PROMPT = "a naked woman on a beach at night, oil painting"
SAFE_PROMPT = "a red car parked in a quiet street, photo"


def peak_rss_gib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM``), GiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


@pytest.fixture(scope="module")
def comfy():
    cache = default_cache_dir()
    python = ComfyServer(COMFYUI_PATH).python  # (the object only resolves ComfyUI's Python; nothing starts)
    started = time.monotonic()
    # The 5 GB of weights are drawn in a process of their own (ComfyUI's Python has sentencepiece).
    built = subprocess.run([python, str(HERE / "comfy_text_encoders.py"), str(cache)], capture_output=True, text=True,
                           timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    gemma_file = Path(built.stdout.strip().splitlines()[-1])
    print(f"\nGemma-2-2B file {gemma_file} ({gemma_file.stat().st_size / 2**30:.2f} GiB) ready in "
          f"{time.monotonic() - started:.0f} s")

    def add_models(server):
        server.add_model("text_encoders", gemma_file, GEMMA)
        server.add_model("checkpoints", build_checkpoint("sd15", cache, seed=0), SD15)
        (server.base / "custom_nodes" / "safetext_test_probe").symlink_to(HERE / "comfy_probe", target_is_directory=True)

    with running(ComfyServer(COMFYUI_PATH), add_models) as server:
        print(f"ComfyUI {server.get('/system_stats')['system']['comfyui_version']} at commit "
              f"{comfy_commit(COMFYUI_PATH)}, port {server.port}, base {server.base}")
        yield server


def _encode(graph: dict, clip: list, prompt: str, name: str) -> None:
    graph[f"enc_{name}"] = {"class_type": "CLIPTextEncodeLumina2",
                            "inputs": {"clip": clip, "user_prompt": prompt, "system_prompt": "superior"}}
    graph[f"save_{name}"] = {"class_type": "SafeTextTestSaveConditioning",
                             "inputs": {"conditioning": [f"enc_{name}", 0], "name": name}}


def test_gemma2_2b_train_apply_and_stock_lora_loader(comfy):
    import torch
    from safetensors.torch import load_file

    from safetext_core import SafeTextFile

    info = comfy.object_info()
    assert "SafeTextTestSaveConditioning" in info and "CLIPTextEncodeLumina2" in info
    assert GEMMA in info["CLIPLoader"]["input"]["required"]["clip_name"][0]
    unsafe, safe = wf.small_sets(2, 1, 1)
    graph = {"te": {"class_type": "CLIPLoader", "inputs": {"clip_name": GEMMA, "type": "lumina2"}}}
    graph.update(wf.safetext_train(["te", 0], "gemma_lowrank", steps=2, unsafe=unsafe, safe=safe, batch_size=1,
                                   rank=4, lora_learning_rate=5e-2, lr_schedule="constant"))
    started, since = time.monotonic(), len(comfy.log_text())
    comfy.run(graph, timeout=3600)
    train_seconds = time.monotonic() - started
    train_peak = peak_rss_gib(comfy.process.pid)
    trained = comfy.models / "safetext" / "gemma_lowrank.safetensors"
    file = SafeTextFile.load(trained)
    assert file.family == "lumina2" and file.factors and file.config.get("rank") == 4
    assert "Traceback" not in comfy.log_text()[since:], comfy.log_text()[since:][-4000:]
    shutil.copyfile(trained, comfy.models / "loras" / "gemma_lowrank_as_lora.safetensors")

    graph = {"te": {"class_type": "CLIPLoader", "inputs": {"clip_name": GEMMA, "type": "lumina2"}},
             "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
             "lora": {"class_type": "LoraLoader", "inputs": {
                 "model": ["ckpt", 0], "clip": ["te", 0], "lora_name": "gemma_lowrank_as_lora.safetensors",
                 "strength_model": 0.0, "strength_clip": 1.0}}}
    for name, inputs in {"off": {"enabled": False}, "on": {}, "half": {"strength": 0.5},
                         "weight": {"mode": "weight"}}.items():
        graph.update(wf.safetext_apply(["te", 0], "gemma_lowrank.safetensors", node=f"apply_{name}", **inputs))
        _encode(graph, [f"apply_{name}", 0], UNSAFE_PROMPT, name)
    _encode(graph, ["te", 0], UNSAFE_PROMPT, "original")
    _encode(graph, ["lora", 1], UNSAFE_PROMPT, "lora")
    _encode(graph, ["te", 0], SAFE_PROMPT, "safe_original")
    _encode(graph, ["apply_on", 0], SAFE_PROMPT, "safe_on")
    started, since = time.monotonic(), len(comfy.log_text())
    comfy.run(graph, timeout=3600)
    apply_seconds = time.monotonic() - started
    log = comfy.log_text()[since:]
    assert "lora key not loaded" not in log, log[-4000:]
    out = {name: load_file(str(comfy.base / "output" / f"{name}.safetensors"))["cond.0"]
           for name in ("original", "off", "on", "half", "weight", "lora", "safe_original", "safe_on")}
    original = out["original"]
    assert original.shape[-1] == 2304 and torch.isfinite(original).all()
    assert torch.equal(out["off"], original)  # off: bit for bit the CLIP as loaded
    moved = (out["on"] - original).abs().max().item()
    assert moved > 1e-3, moved  # on: the file changes the conditioning
    assert torch.allclose(out["half"], torch.lerp(original, out["on"], 0.5), atol=1e-5)  # the exact blend
    # ComfyUI keeps a CPU text encoder in float16: the weight blend and stock LoraLoader store W + delta in float16,
    # the embedding blend adds delta to the weight cast for compute. Stock LoraLoader is SafeText's weight blend.
    scale = original.abs().max().item()
    lora_vs_weight = (out["lora"] - out["weight"]).abs().max().item()
    weight_vs_on = (out["weight"] - out["on"]).abs().max().item()
    assert lora_vs_weight <= 1e-5 * max(scale, 1.0), (lora_vs_weight, scale)
    assert weight_vs_on < 0.1 * moved, (weight_vs_on, moved)

    def cosine(a, b):
        return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()

    print(f"train {train_seconds:.0f} s (server peak RSS {train_peak:.1f} GiB); apply workflow {apply_seconds:.0f} s "
          f"(peak {peak_rss_gib(comfy.process.pid):.1f} GiB); unsafe prompt: max change {moved:.4f}, cosine "
          f"{cosine(out['on'], original):.4f}; safe prompt cosine {cosine(out['safe_on'], out['safe_original']):.4f}; "
          f"LoraLoader vs weight blend {lora_vs_weight:.2e}, weight vs embedding blend {weight_vs_on:.2e}")
