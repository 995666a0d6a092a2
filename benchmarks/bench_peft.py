"""lowrank_vs_peft: SafeText's own low-rank adapters against PEFT's LoRA on the same encoder, side by side.

Issue 12 allows "PEFT, or an equivalent of your own that is simpler and as fast". SafeText keeps its own
(:mod:`safetext_core.lowrank`: a forward hook on the existing ``nn.Linear``, so parameter names, validation,
mining and resume stay as they are, and the hosts need no PEFT). This measures whether it is as fast, and that
it computes the same thing:

* **Step time**: one training step as the loop takes it (forward of a batch of prompts through SD 1.5's CLIP-L
  text model, random weights, real size; a squared-error loss on the last hidden state; backward; AdamW on the
  factors), the two adapters on two copies of the same encoder with the same targets (every block projection
  and MLP layer) and rank, timed in alternation (A, B, A, B, ...) so drift in the machine's speed hits both;
  median of ``repeats`` after ``warmup``.
* **Same update**: PEFT's ``lora_A`` / ``lora_B`` are set to SafeText's ``lora_down`` / ``lora_up`` (non-zero),
  and the outputs and the factors' gradients of the two models are compared (largest absolute difference).
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch

from .common import BenchResult, Options, Row, clip_l_config, fmt_seconds, median, randomise_, synchronize

NAME = "lowrank_vs_peft"
RANK = 8
ALPHA = 16.0  # not the rank: the scale alpha / rank is then 2, and the comparison checks it too
TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]  # every block linear of CLIP's text model


def _models(quick: bool, seed: int) -> tuple[torch.nn.Module, torch.nn.Module, list[tuple[Any, Any]]]:
    """(own, peft) adapted copies of one random CLIP-L with the same non-zero factors, and the pairs of
    adapted layers ``(own module, PEFT layer)``."""
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPTextModel

    from safetext_core import lowrank

    base = randomise_(CLIPTextModel(clip_l_config(quick)), seed).eval()
    base.requires_grad_(False)
    own = copy.deepcopy(base)
    lowrank.attach_adapters(own, RANK, ALPHA, (r"layers\.\d+\.",))
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0,
                                                                target_modules=TARGETS))
    generator = torch.Generator().manual_seed(seed + 1)
    pairs = []
    with torch.no_grad():  # same non-zero factors in both (both start ``up`` / B at zero)
        for name, module in own.named_modules():
            if hasattr(module, "lora_up"):
                module.lora_up.copy_(0.01 * torch.randn(module.lora_up.shape, generator=generator))
                layer = peft_model.get_submodule("base_model.model." + name)
                layer.lora_A["default"].weight.copy_(module.lora_down)
                layer.lora_B["default"].weight.copy_(module.lora_up)
                pairs.append((module, layer))
    trainable = sum(1 for p in peft_model.parameters() if p.requires_grad)
    assert trainable == 2 * len(pairs), "PEFT adapted other layers than SafeText"
    return own, peft_model, pairs


def _ids(quick: bool, batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, clip_l_config(quick).vocab_size - 1, (batch, 77), generator=generator)
    ids[:, 0] = 0
    ids[:, -1] = 2  # one end token per prompt, as the tokenizer pads with it
    return ids


def _step(model: torch.nn.Module, ids: torch.Tensor, target: torch.Tensor, optimizer: Any) -> None:
    optimizer.zero_grad(set_to_none=True)
    out = model(input_ids=ids).last_hidden_state
    (out - target).square().mean().backward()
    optimizer.step()


def run(opts: Options) -> BenchResult:
    try:
        import peft
    except ImportError:
        return BenchResult(NAME, [Row(NAME, "own adapters vs PEFT", "PEFT is not installed", None, "-", None,
                                      "pip install peft (the dev extra has it)")], {"skipped": "peft missing"})
    device = opts.torch_device
    own, peft_model, pairs = _models(opts.quick, opts.seed)
    own.to(device)
    peft_model.to(device)
    own_params = [p for m, _ in pairs for p in (m.lora_down, m.lora_up)]
    peft_params = [p for _, layer in pairs for p in (layer.lora_A["default"].weight, layer.lora_B["default"].weight)]
    batch = 32  # the default step: 16 unsafe and 16 safe prompts
    ids = _ids(opts.quick, batch, opts.seed).to(device)

    # Same update: outputs and every factor's gradient after one backward pass (before any optimiser step).
    target = torch.zeros(batch, 77, clip_l_config(opts.quick).hidden_size, device=device)
    outs = []
    for model in (own, peft_model):
        out = model(input_ids=ids).last_hidden_state
        (out - target).square().mean().backward()
        outs.append(out.detach())
    out_diff = float((outs[0] - outs[1]).abs().max())
    grad_diff = max(float((a.grad - b.grad).abs().max()) for a, b in zip(own_params, peft_params))
    for p in own_params + peft_params:
        p.grad = None

    optimizers = {"own": torch.optim.AdamW(own_params, lr=1e-3), "peft": torch.optim.AdamW(peft_params, lr=1e-3)}
    models = {"own": own, "peft": peft_model}
    times: dict[str, list[float]] = {"own": [], "peft": []}
    for i in range(opts.warmup + opts.repeats):
        for name in ("own", "peft") if i % 2 == 0 else ("peft", "own"):
            synchronize(device)
            start = time.perf_counter()
            _step(models[name], ids, target, optimizers[name])
            synchronize(device)
            if i >= opts.warmup:
                times[name].append(time.perf_counter() - start)
    a, b = median(times["own"]), median(times["peft"])
    size = "toy" if opts.quick else "real size"
    rows = [
        Row(NAME, f"rank-{RANK} step: own adapters vs PEFT LoRA", f"{fmt_seconds(a)} vs {fmt_seconds(b)}", a / b,
            "<= 1.0", a <= b * 1.05, f"SD 1.5 CLIP-L ({size}, random weights), batch {batch} x 77 tokens, every block "
            f"linear, AdamW; {opts.device}; alternating, median of {opts.repeats}; PEFT {peft.__version__}",
            "" if a <= b else ("PASS (within noise)" if a <= b * 1.05 else "")),
        Row(NAME, "own adapters vs PEFT LoRA: same factors, largest output / gradient difference",
            f"{out_diff:.2e} / {grad_diff:.2e}", None, "-", None, "float32, one backward pass; lora_down / "
            "lora_up against PEFT's lora_A / lora_B of the same layer"),
    ]
    raw = {"step_s": times, "max_output_difference": out_diff, "max_gradient_difference": grad_diff,
           "peft_version": peft.__version__, "rank": RANK, "batch": batch}
    return BenchResult(NAME, rows, raw)
