"""``safetext export --format a1111`` against AUTOMATIC1111's own key resolution (v1.10.1,
``extensions-builtin/Lora/networks.py``), copied here as a stand-in: ``convert_diffusers_name_to_compvis``'s
text-encoder rules, the ``lora_te1_text_model`` fallbacks, then a look-up among ``network_layer_mapping`` (the
text encoder's module names with "_" for "."). A key that resolves to no module, or to a module whose forward
the Lora extension does not patch (it patches Linear, Conv2d, GroupNorm, LayerNorm, MultiheadAttention), is
silently skipped by the webui: every exported key must resolve to a patched module, and what cannot be
expressed must be left out of the file and named in its metadata.
"""
from __future__ import annotations

import json
import re

import torch
from safetensors import safe_open

from safetext_core import SafeTextFile
from safetext_core.exports import a1111_left_out, forge_left_out, to_a1111
from tiny_models import random_clip_state

PATCHED = ("Linear", "LayerNorm")  # the kinds of CLIP-L modules the Lora extension applies networks in


def _clip_modules(prefix: str, state: dict) -> dict[str, str]:
    """A1111's ``network_layer_mapping`` for a CLIP-L (``transformer.text_model.*`` under ``prefix``): name ->
    module kind."""
    out = {}
    for param in state:
        module = param.rsplit(".", 1)[0]
        kind = ("Embedding" if ".embeddings." in module else "LayerNorm" if "norm" in module else "Linear")
        out[(prefix + module).replace(".", "_")] = kind
    return out


def _resolve(key: str, mapping: dict[str, str]) -> str | None:
    """networks.py ``load_network``: the module a SD 1.x key lands on, or None (skipped with a DEBUG line)."""
    stem = key.rsplit(".", 1)[0]
    m = re.match(r"lora_te_text_model_encoder_layers_(\d+)_(.+)", stem)
    converted = f"transformer_text_model_encoder_layers_{m.group(1)}_{m.group(2)}" if m else stem
    if converted in mapping:
        return converted
    if "lora_te1_text_model" in stem:
        for candidate in (stem.replace("lora_te1_text_model", "0_transformer_text_model"),
                          stem.replace("lora_te1_text_model", "transformer_text_model")):
            if candidate in mapping:
                return candidate
    return None


def test_every_exported_key_reaches_a_module_the_webui_patches(tmp_path):
    state = random_clip_state(seed=3)
    gen = torch.Generator().manual_seed(0)
    deltas = {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in state.items()
              if k.startswith("text_model.final_layer_norm.") or ".mlp.fc1." in k or "token_embedding" in k}
    deltas["text_model.encoder.layers.0.layer_norm1.bias"] = torch.full_like(
        state["text_model.encoder.layers.0.layer_norm1.bias"], 0.01)  # a LayerNorm whose weight is unchanged
    file = SafeTextFile(family="sd1", deltas={"clip_l": deltas}, fingerprints={"clip_l": "f" * 16})
    path = to_a1111(file, tmp_path / "export.safetensors")
    mapping = _clip_modules("transformer.", state)
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        meta = handle.metadata()
        zero = handle.get_tensor("lora_te_text_model_encoder_layers_0_layer_norm1.diff")
    for key in keys:
        module = _resolve(key, mapping)
        assert module is not None and mapping[module] in PATCHED, key
    # The LayerNorm the file moves only in its bias gets a zero weight difference: the webui reads diff_b only
    # beside a diff.
    assert not zero.any()
    assert "transformer_text_model_final_layer_norm.diff" in keys and "transformer_text_model_final_layer_norm.diff_b" in keys
    left = json.loads(meta["safetext.a1111_left_out"])
    assert left["tensors"] == ["clip_l.text_model.embeddings.token_embedding.weight"]
    assert 0 < left["share"] < 1 and left == a1111_left_out(file)
    # Forge maps only the layers' projections: the LayerNorms (final one included) are left out there too.
    forge = json.loads(meta["safetext.forge_left_out"])
    assert forge == forge_left_out(file) and forge["share"] > left["share"]
    assert {"clip_l.text_model.final_layer_norm.weight", "clip_l.text_model.encoder.layers.0.layer_norm1.bias",
            "clip_l.text_model.embeddings.token_embedding.weight"} <= set(forge["tensors"])
    assert not any("_proj." in t or ".mlp.fc" in t for t in forge["tensors"]), forge["tensors"]
    assert not any("token_embedding" in k for k in keys)
