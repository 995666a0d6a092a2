"""How the training copy of an encoder is made to fit: its frozen weights' precision and activation checkpointing.

A 4-8B text encoder (T5-XXL, Qwen3, Gemma-2) does not fit a 24 GB GPU as a float32 training copy: 4 bytes a weight
are 16 GB for a 4B model before a single activation. A low-rank run trains only the factors, so the frozen weights
can stay in bfloat16 (2 bytes), with the factors, their gradients and AdamW's moments in float32. The activations
a backward pass needs grow with depth x tokens x width; with checkpointing each block keeps only its input and
recomputes the rest during the backward pass (one more forward pass per training pass, the usual price).

:func:`memory_plan` decides both for a run (``AlignConfig.base_dtype`` / ``gradient_checkpointing``; "auto" turns them
on for T5 / LLM encoders trained low-rank on a GPU), :func:`copy_as` makes the copy without a float32 detour, and
:func:`checkpoint_blocks` wraps the blocks. ``benchmarks/bench_llm_memory.py`` measures what they save.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import InsufficientMemory

# Encoders large enough that the memory measures pay for themselves (and whose originals are recomputed).
LARGE_ARCHS = ("t5", "gemma2", "qwen3", "qwen25vl")


def memory_plan(config: Any, arch: str, device: torch.device | str) -> tuple[torch.dtype, bool]:
    """``(dtype of the frozen weights, checkpoint the blocks?)`` for one encoder of a run of ``config``."""
    on_gpu = torch.device(device).type == "cuda"
    large = arch in LARGE_ARCHS
    if config.base_dtype == "auto":
        dtype = torch.bfloat16 if config.rank > 0 and large and on_gpu else torch.float32
    else:
        dtype = getattr(torch, config.base_dtype)
    checkpointing = config.gradient_checkpointing == "on" or (config.gradient_checkpointing == "auto" and large
                                                              and on_gpu)
    return dtype, checkpointing


def original_dtype(config: Any, device: torch.device | str) -> torch.dtype:
    """The precision to load a T5 / LLM encoder's original in for a run of ``config`` on ``device``.

    A run whose training copy keeps the frozen weights in half precision (a low-rank run on a GPU, or one asked for
    ``base_dtype`` bfloat16 / float16) needs nothing more precise of the original: it is read once into that copy,
    encoded in it for the held-out figures, and fingerprinted in float16 anyway. Loading it in the copy's precision
    halves what the host holds (8 GB instead of 16 for a 4B encoder), and on the CPU the copy then shares the
    original's weights. Every other run loads float32, as before; CLIP encoders are always loaded in float32."""
    dtype, _ = memory_plan(config, LARGE_ARCHS[0], device)
    return dtype


def copy_as(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A deep copy of ``model`` whose floating-point parameters are ``dtype``, frozen; buffers keep their own dtype
    (RoPE frequencies stay float32). Each parameter is cast on its own, so the copy never passes through a float32
    model (a float32 4B copy is 16 GB); tied parameters stay tied (one memo entry each)."""
    memo: dict[int, Any] = {}
    for param in model.parameters():
        data = param.detach().to(dtype=dtype, copy=True) if param.is_floating_point() else param.detach().clone()
        memo[id(param)] = nn.Parameter(data, requires_grad=False)
    return copy.deepcopy(model, memo)


def available_host_memory() -> int | None:
    """Bytes of memory the system can still give (Linux ``MemAvailable``; psutil elsewhere), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no psutil, or it cannot tell: no check rather than a wrong refusal
        return None


def ensure_host_memory(needed: int, what: str, advice: str = "free memory (close other models or programs) or "
                                                                 "use a machine with more") -> None:
    """Refuse with :class:`InsufficientMemory` when ``needed`` bytes for ``what`` exceed the free memory.

    The estimate counts only the tensors about to be made, so a refusal is certain to be right; a host that would
    otherwise be killed by the operating system (ComfyUI on a 2.6B encoder on a small machine) says why instead."""
    available = available_host_memory()
    if available is not None and needed > available:
        raise InsufficientMemory(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory; {available / 2**30:.1f} GiB is free. Nothing was "
            f"changed: {advice}")


def device_bytes(encoders: Any, config: Any, device: torch.device | str) -> int:
    """About how much device memory a run of ``config`` takes on ``device`` (for a host to make room first):
    full fine-tuning, a float32 training copy plus a gradient and AdamW's two moments per weight, and the float32
    originals of the held-out pass (20 bytes a parameter, also for a low-rank run that compresses); low-rank adapters, the frozen weights in their planned dtype twice
    (the training copy, then the held-out pass's copy), the factors and activations being small beside them."""
    from .lowrank import method_for

    adapters = method_for(config, [spec.arch for spec in encoders.profile.encoders]) == "adapters"
    total = 0
    for spec in encoders.profile.encoders:
        count = sum(p.numel() for p in encoders.models[spec.name].parameters())
        if adapters:
            dtype, _ = memory_plan(config, spec.arch, device)
            total += 2 * count * (torch.finfo(dtype).bits // 8)
        else:
            total += 20 * count
    return total


def holds_as(model: nn.Module, dtype: torch.dtype, device: torch.device | str | None = None) -> bool:
    """Whether every floating-point parameter of ``model`` already has ``dtype`` and sits on ``device`` (None: any),
    so that a copy in that dtype on that device would be a twin."""
    target = None if device is None else torch.device(device)
    return all(p.dtype == dtype and (target is None or p.device.type == target.type and
                                     (target.index is None or p.device.index == target.index))
               for p in model.parameters() if p.is_floating_point())


def share_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s modules that shares its parameters: hooks, adapters and wrappers added to the copy leave
    ``model`` as it was, and no second set of weights is allocated. Moving the copy to another device or dtype would
    move the shared parameters too: make it only where the copy stays as it is."""
    return copy.deepcopy(model, {id(param): param for param in model.parameters()})


def checkpoint_blocks(model: nn.Module) -> int:
    """Recompute each transformer block's activations in the backward pass instead of keeping them; return how many
    blocks were wrapped.

    Blocks are the children of the outermost ``nn.ModuleList`` s of one repeated class (CLIP's and Qwen's
    ``layers``, T5's ``block``). Only passes with gradients are checkpointed: encoding without gradients (the
    originals, validation, mining) runs the blocks as they are. The wrapped forward is the block's own, so hooks on
    its linear layers (the low-rank adapters) run again in the recompute, as they must.
    """
    wrapped: list[str] = []
    count = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2 or len({type(m) for m in module}) != 1:
            continue
        if any(name.startswith(outer + ".") for outer in wrapped) or not any(True for _ in module.parameters()):
            continue
        for block in module:
            _checkpoint_forward(block)
            count += 1
        wrapped.append(name)
    return count


def _checkpoint_forward(block: nn.Module) -> None:
    forward = block.forward

    def checkpointed(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        # Non-reentrant: keyword inputs get their gradients, and the recompute is checked against the first pass.
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    block.forward = checkpointed
