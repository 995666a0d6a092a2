"""Low-rank training from the hosts' front doors (stand-in hosts, as tests/test_comfy_nodes.py and
tests/test_a1111_scripts.py): the ComfyUI Train node and the A1111/Forge training function take a rank and write a
LoRA-layout SafeText file; the node's new inputs come last, so saved workflows keep their widget values."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from safetext_core import SafeTextFile
from test_a1111_scripts import sd1, webui  # noqa: F401  (fixtures)
from test_comfy_nodes import env, host, pack, sd1_clip, train  # noqa: F401  (fixtures and helpers)

LOW_RANK_INPUTS = ["rank", "lora_alpha", "lora_learning_rate", "lora_targets"]


def _kohya_only(path) -> None:
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("lora_te_text_model_encoder_layers_") for k in keys)


def test_train_node_trains_a_low_rank_file(pack, host):
    optional = list(pack.NODE_CLASS_MAPPINGS["SafeTextTrain"].INPUT_TYPES()["optional"])
    # appended (then the schedule, then how factors are made): older workflows load unchanged
    assert optional[-len(LOW_RANK_INPUTS) - 2:] == LOW_RANK_INPUTS + ["lr_schedule", "lowrank_method"]
    clip = sd1_clip()
    with torch.inference_mode():
        result = train(pack, clip, name="tiny_lowrank", rank=2, lora_learning_rate=2e-2)
    path = Path(host.folder_paths.models_dir) / "safetext" / "tiny_lowrank.safetensors"
    file = SafeTextFile.load(path)
    assert file.config["rank"] == 2 and file.factors["clip_l"]
    assert all(up.shape[1] == 2 for up, _, _ in file.factors["clip_l"].values())
    _kohya_only(path)
    aligned = result["result"][0]
    assert not torch.equal(aligned.encode(["bloody corpse, photo"])[0], clip.encode(["bloody corpse, photo"])[0])

    # Loaded back, the file stays factors (expanded when read), and the weight blend patches them as ComfyUI's own
    # LoRA patch: the same conditioning as every difference expanded into a "diff" patch, nothing expanded ahead.
    from safetext_core.lowrank import Expansions

    comfy_clip = pack.nodes.comfy_clip
    assert isinstance(file.deltas["clip_l"], Expansions)
    prompts = ["bloody corpse, photo", "a red car, photo"]
    lora, _ = comfy_clip.apply_file(clip, file, 1.0, "weight")
    kinds = {patch[0][1][0] for patch in lora.patcher.patches.values()}
    assert kinds == {"lora"} and len(lora.patcher.patches) == len(file.factors["clip_l"])
    expanded = clip.clone()
    expanded.add_patches({f"clip_l.transformer.{n}": ("diff", (d,)) for n, d in file.deltas["clip_l"].items()}, 1.0)
    by_lora, by_diff = lora.encode(prompts)[0], expanded.encode(prompts)[0]
    assert torch.allclose(by_lora, by_diff, atol=1e-5) and not torch.equal(by_lora, clip.encode(prompts)[0])
    # The embedding blend expands each difference during its aligned pass: at strength 1, the Train node's encoder
    embedded, _ = comfy_clip.apply_file(clip, file, 1.0, "embedding")
    assert torch.allclose(embedded.encode(prompts)[0], aligned.encode(prompts)[0], atol=1e-5)


def test_webui_training_takes_a_rank(webui, sd1):
    from conftest import SAFE_WORDS, UNSAFE_WORDS

    assert set(LOW_RANK_INPUTS) <= set(webui.training.FIELDS)  # POST /safetext/v1/train accepts them
    unsafe = "\n".join(f"{w}, {s}" for w in UNSAFE_WORDS for s in ("photo", "sketch"))
    safe = "\n".join(f"{w}, {s}" for w in SAFE_WORDS for s in ("photo", "sketch"))
    assert "lr_schedule" in webui.training.FIELDS
    result = webui.training.train([], unsafe, safe, True, steps=2, batch_size=4, name="lowrank", rank=2,
                                  lora_targets=r"mlp\.fc[12]", lr_schedule="constant")
    path = webui.folder / result["file"]
    file = SafeTextFile.load(path)
    assert file.config["rank"] == 2 and file.config["lora_targets"] == [r"mlp\.fc[12]"]
    assert file.config["lr_schedule"] == "constant"
    assert {p.split(".")[-2] for p in file.factors["clip_l"]} <= {"fc1", "fc2"}
    _kohya_only(path)
    # The tab's status says how big the LoRA is and how to use it with the webui's own Lora, in its Lora folder.
    import sys
    from types import SimpleNamespace

    tab = sys.modules["safetext_webui.training_tab"]
    webui.shared.cmd_opts = SimpleNamespace(lora_dir="/srv/webui/models/Lora")
    hint = tab.lora_hint(result)
    assert "rank-2 LoRA" in hint and f"({path.stat().st_size / 2**20:.1f} MiB)" in hint
    assert "&lt;lora:lowrank:1&gt;" in hint and "/srv/webui/models/Lora" in hint
    assert tab.lora_hint({**result, "rank": 0}) == ""


def test_train_node_says_how_much_memory_it_needs(pack, host, monkeypatch):
    # Too little free memory for the encoder's float32 copy: the node fails with the figure instead of the
    # operating system killing ComfyUI, and no file is written
    import pytest

    from safetext_core import memory
    from safetext_core.errors import InsufficientMemory

    monkeypatch.setattr(memory, "available_host_memory", lambda: 1 << 20)
    with torch.inference_mode(), pytest.raises(InsufficientMemory, match=r"needs about .* GiB of memory; 0\.0 GiB"):
        train(pack, sd1_clip(), name="no_room")
    assert not (Path(host.folder_paths.models_dir) / "safetext" / "no_room.safetensors").exists()
