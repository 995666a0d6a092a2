"""lowrank_file_sizes: the size of a rank-8 SafeText file for each T5 / LLM family, against its encoder's size.

Issue 13's target: a SafeText file for these encoders at most 2% of the encoder's size. Each encoder is built from
its published configuration (the real widths, depths, heads and vocabularies) on PyTorch's ``meta`` device, so
nothing is allocated: its parameters are counted exactly and the linear layers the family's ``adapter_targets``
select are found by the same :func:`safetext_core.lowrank.check_targets` training uses. A SafeText file is then
written from random factors of those exact shapes (``SafeTextFile.save``, header and metadata included; the size
depends only on the shapes) and compared with the encoder's weights in bfloat16 / float16 (2 bytes a parameter,
how these encoders are downloaded) and in float32.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from .common import BenchResult, Options, Row, fmt_bytes

NAME = "lowrank_file_sizes"
RANK = 8


def _encoders() -> list[tuple[str, str, Any]]:
    """(family, encoder, an uninstantiated model factory) with the published configurations."""
    from transformers import Gemma2Config, Gemma2Model, Qwen2Config, Qwen2Model, Qwen3Config, Qwen3Model, T5Config, \
        T5EncoderModel

    def qwen3(hidden: int, inter: int, layers: int, heads: int, kv: int) -> Any:
        return lambda: Qwen3Model(Qwen3Config(hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                                              num_attention_heads=heads, num_key_value_heads=kv, head_dim=128,
                                              vocab_size=151936))

    t5 = lambda: T5EncoderModel(T5Config(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,  # noqa: E731
                                         feed_forward_proj="gated-gelu", vocab_size=32128))
    return [
        ("flux / sd3 / chroma", "t5xxl", t5),  # google t5-v1_1-xxl encoder
        ("lumina2", "gemma2_2b", lambda: Gemma2Model(Gemma2Config(
            hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
            num_key_value_heads=4, head_dim=256, vocab_size=256000))),
        ("anima", "qwen3_06b", qwen3(1024, 3072, 28, 16, 8)),
        ("z_image / flux2_klein_4b", "qwen3_4b", qwen3(2560, 9728, 36, 32, 8)),
        ("flux2_klein_9b", "qwen3_8b", qwen3(4096, 12288, 36, 32, 8)),
        # Qwen2.5-VL-7B's text model has the linear shapes of Qwen2-7B (the same config values)
        ("qwen_image", "qwen25_7b", lambda: Qwen2Model(Qwen2Config(
            hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, vocab_size=152064))),
    ]


def _targets(encoder: str) -> tuple[str, ...]:
    from safetext_core.families import FAMILIES

    for family in FAMILIES.values():
        for spec in family.encoders:
            if spec.name == encoder and spec.adapter_targets:
                return spec.adapter_targets
    raise KeyError(encoder)


def run(opts: Options) -> BenchResult:
    from safetext_core import SafeTextFile, lowrank
    from safetext_core.fingerprint import fingerprint_state_dict

    rows: list[Row] = []
    raw: dict[str, Any] = {"rank": RANK, "encoders": {}}
    fp = fingerprint_state_dict({"w": torch.ones(4)})
    with tempfile.TemporaryDirectory() as tmp:
        for family, encoder, build in _encoders():
            with torch.device("meta"):
                model = build()
            count = sum(p.numel() for p in model.parameters())
            modules = dict(model.named_modules())
            names = lowrank.check_targets(model, _targets(encoder))
            factors = {}
            for name in names:
                out_f, in_f = modules[name].weight.shape
                # stored as training stores them (lowrank.factors_from_params): float16 values, two bytes each
                factors[name + ".weight"] = (*lowrank.in_half_precision(torch.randn(out_f, RANK) * 1e-3,
                                                                        torch.randn(RANK, in_f) * 1e-3), float(RANK))
            del model, modules
            path = SafeTextFile(family="generic", deltas={encoder: {p: torch.zeros(0) for p in factors}},
                                fingerprints={encoder: fp}, config={"rank": RANK},
                                factors={encoder: factors}).save(Path(tmp) / f"{encoder}.safetensors")
            size = path.stat().st_size
            path.unlink()
            half = 2 * count
            raw["encoders"][encoder] = {"family": family, "parameters": count, "adapted_layers": len(names),
                                        "file_bytes": size}
            rows.append(Row(NAME, f"{encoder} ({family}) rank-{RANK} file vs the encoder in bf16",
                            f"{fmt_bytes(size)} vs {fmt_bytes(half)}", size / half, "<= 0.02", size / half <= 0.02,
                            f"{count / 1e9:.2f}B parameters, {len(names)} adapted linear layers (the family's "
                            f"adapter targets), float16 factors; vs float32 weights {size / (4 * count):.4f}"))
    return BenchResult(NAME, rows, raw)
