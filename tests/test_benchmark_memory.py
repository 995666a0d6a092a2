"""The low-rank benchmark's live-tensor peaks read torch.profiler's memory records correctly.

``benchmarks.bench_lowrank.tensor_peak`` names the timeline's size columns by category; if torch reordered them,
the benchmark would call optimizer state "activation" without failing. One AdamW step of a known linear layer
fixes what each column must hold: the weights (parameter), their gradients, and two moments each (optimizer state).
"""
from __future__ import annotations

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_lowrank import allocation_peak, tensor_peak


def test_tensor_peak_splits_one_adamw_step_by_category(tmp_path):
    torch.manual_seed(0)
    layer = torch.nn.Linear(512, 512, bias=False)  # 1 MiB of float32 weights
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    batch = torch.randn(8, 512)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        for _ in range(2):
            layer(batch).square().mean().backward()
            optimizer.step()
    path = tmp_path / "timeline.json"
    with pytest.warns(FutureWarning):
        prof.export_memory_timeline(str(path), device="cpu")
    peak = tensor_peak(json.loads(path.read_text()))
    weight = 512 * 512 * 4
    split = peak["by_category"]
    assert split["optimizer_state"] >= 2 * weight  # exp_avg and exp_avg_sq
    assert split["gradient"] == weight
    assert peak["peak_bytes"] >= 4 * weight  # weights, gradient, two moments
    assert peak["peak_bytes"] == sum(split.values())
    # The cheap count the suite uses: what was allocated minus freed while profiling (the weights came before it),
    # so at least the gradient and both moments, and less than the timeline's peak, which counts the weights too.
    live = allocation_peak(prof)
    assert 3 * weight <= live < peak["peak_bytes"]
