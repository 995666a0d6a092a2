"""``safetext export --format a1111`` against the key conversion of a real AUTOMATIC1111 checkout (``A1111_PATH``):
``convert_diffusers_name_to_compvis`` and the tables it uses are taken from that checkout's
``extensions-builtin/Lora/networks.py`` (by parsing it: importing it needs a running webui) and applied to the
keys of an export, followed by ``load_network``'s look-up in ``network_layer_mapping`` (module names of the
webui's SD 1.x text encoder, ``transformer.text_model.*``, "_" for "."). Light: no webui, no checkpoint. The
full check, ``<lora:NAME:1>`` against the weight blend in images, is ``test_a1111.py``.
"""
from __future__ import annotations

import ast
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import random_clip_state  # noqa: E402

A1111_PATH = os.environ.get("A1111_PATH")


def _webui_converter(root: Path):
    source = (root / "extensions-builtin" / "Lora" / "networks.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    wanted = {"re_digits", "re_x_proj", "re_compiled", "suffix_conversion", "convert_diffusers_name_to_compvis"}
    nodes = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
             or (isinstance(n, ast.Assign) and any(getattr(t, "id", None) in wanted for t in n.targets))]
    assert any(isinstance(n, ast.FunctionDef) for n in nodes), "convert_diffusers_name_to_compvis not found"
    namespace = {"re": re}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), "networks.py", "exec"), namespace)  # the webui's own code
    return namespace["convert_diffusers_name_to_compvis"]


@pytest.mark.skipif(not A1111_PATH, reason="A1111_PATH is not set: no AUTOMATIC1111 checkout to read")
def test_every_exported_key_resolves_with_the_webuis_own_conversion(tmp_path):
    from safetext_core import SafeTextFile
    from safetext_core.exports import to_a1111

    convert = _webui_converter(Path(A1111_PATH).expanduser().resolve())
    state = random_clip_state(seed=4)
    gen = torch.Generator().manual_seed(2)
    deltas = {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in state.items()
              if not k.endswith(("position_embedding.weight", "position_ids"))}
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": "0" * 16})
    path = to_a1111(file, tmp_path / "export.safetensors")
    mapping = {("transformer." + k.rsplit(".", 1)[0]).replace(".", "_") for k in state}
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
    unresolved = []
    for key in keys:
        stem = key.rsplit(".", 1)[0]
        module = convert(stem, False)
        if module not in mapping and "lora_te1_text_model" in stem:
            module = stem.replace("lora_te1_text_model", "transformer_text_model")
        if module not in mapping:
            unresolved.append(key)
    assert not unresolved, unresolved
    assert any("final_layer_norm" in k for k in keys)
