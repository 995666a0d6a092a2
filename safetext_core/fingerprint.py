"""Fingerprints of a text encoder's original weights.

A SafeText file holds weight *differences*; applied to another encoder they mean nothing. The
fingerprint identifies the encoder a file was trained from, robustly across the ways hosts hold
the same weights: fp32, fp16 or bf16, fused or split attention (we read only unfused tensors), on
any device. It is a short list of float64 statistics (sum of |x| and of x^2) of a few fixed
large tensors, computed after rounding to fp16 (so fp32 and fp16 copies agree exactly); two
fingerprints match when every statistic agrees within a relative 1e-4, which bf16 storage stays
well inside while a fine-tune of the encoder moves these sums further. The id shown to users is a hash of those
statistics rounded to 4 significant figures.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Mapping

import torch

from .errors import CheckpointError

VERSION = "st1"
TOLERANCE = 1e-4


def _canonical_names(names: list[str]) -> list[str]:
    layers = sorted({int(m.group(1)) for n in names if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", n))})
    if layers:  # a CLIP text model in transformers naming
        last = layers[-1]
        wanted = [
            "text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.position_embedding.weight",
            "text_model.encoder.layers.0.mlp.fc1.weight",
            "text_model.encoder.layers.0.self_attn.q_proj.weight",
            f"text_model.encoder.layers.{last}.mlp.fc2.weight",
        ]
        return [n for n in wanted if n in names]
    # T5 and Gemma-2 by fixed names, so the order a host's state dict lists them in does not matter; no
    # embedding table (Gemma's is 590M values), which the layers' weights identify as well.
    blocks = sorted({int(m.group(1)) for n in names if (m := re.match(r"encoder\.block\.(\d+)\.", n))})
    if blocks and "encoder.final_layer_norm.weight" in names:
        return [n for n in ("encoder.block.0.layer.0.SelfAttention.q.weight", "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
                            f"encoder.block.{blocks[-1]}.layer.1.DenseReluDense.wo.weight", "encoder.final_layer_norm.weight")
                if n in names]
    decoder = sorted({int(m.group(1)) for n in names if (m := re.match(r"model\.layers\.(\d+)\.", n))})
    if decoder and "model.norm.weight" in names:
        return [n for n in ("model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                            f"model.layers.{decoder[-1]}.mlp.down_proj.weight", "model.norm.weight") if n in names]
    floats = [n for n in names if not n.endswith(("position_ids", "token_type_ids"))]
    return floats[:3] + floats[-3:] if len(floats) > 6 else floats


def fingerprint_stats(state: Mapping[str, torch.Tensor]) -> list[float]:
    if any(k.startswith(("encoder.layers.", "final_layer_norm.")) for k in state):
        from .models import normalise_hf_clip_keys  # transformers 5.x CLIPTextModel has no text_model level

        state = normalise_hf_clip_keys(dict(state))
    names = _canonical_names(list(state.keys()))
    if not names:
        raise CheckpointError("cannot fingerprint an empty encoder")
    stats: list[float] = []
    for name in names:
        tensor = state[name].detach()
        if tensor.device.type == "meta":
            raise CheckpointError(f"cannot fingerprint {name}: its weights are not loaded")
        # Canonical precision: fp16, how checkpoints are usually stored, so fp32 and fp16 copies agree exactly.
        values = tensor.to("cpu").to(torch.float16).to(torch.float64)
        stats.append(float(values.abs().sum()))
        stats.append(float(values.square().sum()))
    return stats


def _short_id(stats: list[float]) -> str:
    rounded = [float(f"{s:.4g}") for s in stats]
    return hashlib.sha256(json.dumps(rounded).encode()).hexdigest()[:12]


def fingerprint_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """Fingerprint string ``st1:<id>:<stats as JSON>`` of an HF-named encoder state dict."""
    stats = fingerprint_stats(state)
    return f"{VERSION}:{_short_id(stats)}:{json.dumps([float(f'{s:.10g}') for s in stats])}"


def short_id(fingerprint: str) -> str:
    parts = fingerprint.split(":", 2)
    return parts[1] if len(parts) == 3 else fingerprint[:12]


def fingerprints_match(a: str, b: str, tolerance: float = TOLERANCE) -> bool:
    try:
        va, ida, sa = a.split(":", 2)
        vb, idb, sb = b.split(":", 2)
        stats_a, stats_b = json.loads(sa), json.loads(sb)
    except (ValueError, AttributeError):
        return a == b
    if va != vb or len(stats_a) != len(stats_b):
        return False
    return all(abs(x - y) <= tolerance * max(abs(x), abs(y), 1e-12) for x, y in zip(stats_a, stats_b))
