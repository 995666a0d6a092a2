"""The SafeText training loop: move unsafe prompts' embeddings away, keep safe prompts' in place.

Objective (Hu, Jiang, Gong 2025), per encoder and consumed output, minimised over the encoder E':

    L_u + lambda * C_u + mu * A_u
    L_u = mean over safe prompts of  d(E'(x_s), E(x_s))                 utility: stay put
    C_u = mean over unsafe prompts of cos(E'(x_u), E(x_u))               = -L_e of the paper
    A_u = mean over unsafe prompts of |E'(x_u) - E(anchor)|^2 / |E(anchor)|^2

``mu = 0`` is the paper's objective exactly as written. Our default adds the anchor term (DES's
idea: land unsafe prompts on something harmless, here the empty prompt, which the diffusion model
renders as an unconditioned picture). It also gives the first steps a gradient: at E' = E the
cosine is at its maximum and its gradient is exactly zero. ``d`` is the L2 distance relative to the
original's norm, smoothed (sqrt(x + eps)) so its gradient exists at zero.

Positions: CLIP's consumer sees all 77 positions, so they all count, except that position 0 (the
start token) is left out of the unsafe terms: under causal attention it is the same vector for
every prompt, carries no meaning and would only dilute the cosine. Masked encoders count only
real tokens. The trained copy runs in eval mode (no dropout).

Cost: the original encoder's outputs never change, so they are computed once for every training prompt
the planned steps will sample and every validation prompt, by the trainee before its first update (which *is* the original, in float32), and
kept on the CPU when training on a GPU. No frozen copy sits on the device and no step spends a
forward pass on it. The safe and the unsafe halves of a step are back-propagated one after the
other (the loss is a sum, so the gradient is the same), which halves the activation memory. The
optimiser is the fused AdamW where torch has it for the device.

The loop reports progress through a callback, checks a cancel flag between steps, evaluates on the
validation split to keep the best weights and stop early, and can checkpoint for resuming.

Why this module is over 400 lines: ``align`` is one function whose state (the prompt pools, the originals
encoded once, the mined prompts, the optimiser and the resume checkpoint) every part of a step reads; losses,
figures and checkpoint I/O already live in their own modules.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .encoding import EncoderSet, check_prompts, consumed_outputs, max_tokens, tokenize
from .errors import AlignmentCancelled, ConfigError
from .evaluation import Validator, feasible, length_batches, score
from .families import EncoderSpec
from .losses import anchor_distance, content_mask, cosine, cosine_shortfall, safe_distance, token_cosine_shortfall
from . import lowrank, memory
from .distributed import Processes
from .models import iter_named_trainable, trim_unread_layers
from .prompt_sets import PromptSets, unsafe_words, vocabulary_words, word_salads
from .outputs import crash_point
from .resume import load_resume, save_resume


_BASE_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class AlignConfig:
    """Every choice the paper leaves open. Defaults were chosen by measurement (README "Defaults" and
    docs/precision.md: the precision settings below were chosen on the independent evaluation sets)."""

    steps: int = 450                 # optimiser steps (upper bound; early stopping may end sooner)
    batch_size: int = 16             # unsafe prompts per step, and as many safe prompts
    learning_rate: float = 1e-4      # AdamW
    lr_schedule: str = "cosine"      # constant | cosine (half a cosine from the learning rate down to lr_floor of it)
    lr_floor: float = 0.1            # the cosine schedule's last learning rate, as a share of the first
    weight_decay: float = 0.0
    lam: float = 1.5                 # lambda: weight of the cosine (effectiveness) term
    anchor_weight: float = 0.3       # mu: pull unsafe prompts towards the anchor; 0 = the paper as written
    anchor_prompt: str = ""          # the harmless anchor (the empty prompt)
    safe_weight: float = 1.0         # weight of the utility term L_u
    safe_distance: str = "relative_l2"  # relative_l2 | l2 | squared_l2
    cos_margin: float = 0.4          # only cosines above this are penalised (-1: plain cosine, as the paper); 0.4 since
                                     # 2026-12-05 (docs/precision.md "A cosine margin of 0.4 with the per-token hinge")
    safe_cos_weight: float = 2.0     # a hinge on safe prompts' cosine: penalise safe_cos_floor - cosine when positive,
    safe_cos_floor: float = 0.9      # so a harmless prompt that starts to lose its meaning is pulled back hardest
                                     # (docs/precision.md "A hinge on safe prompts' cosine": 3 seeds, 2026-12-04)
    safe_cos_per_token: bool = True  # the hinge on each position's cosine, not the whole sequence's (docs/precision.md
                                     # "The hinge per token": 3 seeds, 2026-12-05)
    smoothing: float = 1e-8          # eps inside the square root of the L2 distance
    train: tuple[str, ...] = ()      # regular expressions of parameter names to train (empty: all)
    freeze: tuple[str, ...] = ("position_embedding", "text_projection", "position_ids")
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 25             # validation figures every N steps (0: never)
    early_stop: bool = True          # stop once validation meets the targets below
    threshold: float = 0.5           # an unsafe prompt counts as moved when its cosine falls below this
    target_unsafe_share: float = 0.987
    min_safe_cos: float = 0.98
    min_near_miss_cos: float = 0.92  # near-misses now include whole scenes (the second batch): the previous
                                     # default's files score 0.92-0.94 on their validation part, and a bar of
                                     # 0.95 made validation keep early, under-trained weights
    selection: str = "balanced"      # which validation check is kept: balanced | bars (evaluation.score, docs/precision.md)
    checkpoint_every: int = 0        # write a resume checkpoint every N steps (0: never)
    checkpoint_share: float = 0.1    # ... skipping one that would put the writes above this share of the run's time
                                     # (1: every N steps). A CLIP-L checkpoint is 1.4-1.8 GiB; on a GPU 25 steps take less
                                     # time than writing it (docs/reliability.md, "How often a run checkpoints")
    # Precision: teach which words carry the harm, not which scenes they appear in.
    pair_share: float = 0.5          # minimal pairs per step, as a share of batch_size (0: none); the unsafe side
                                     # joins the unsafe batch, its harmless twin (same scene) the safe batch
    mine_every: int = 25             # every N steps, rank the safe training prompts by how far they moved (0: never)
    mine_share: float = 0.5          # share of each safe batch drawn from the most-moved ones
    mine_pool: int = 128             # how many of the most-moved safe prompts to draw from
    mine_sample: int = 1024          # safe prompts ranked per mining (a fresh random sample, plus the last
                                     # most-moved ones); 0: all of them (about 5,900 with the shipped sets: slow)
    preserve_share: float = 0.5      # extra safe draws per step from word salads of the tokenizer's vocabulary
                                     # (no unsafe word), as a share of batch_size: keep every harmless word in place
    preserve_pool: int = 4000        # how many word salads to make
    # Low-rank alignment (safetext_core/lowrank.py, docs/lowrank.md): rank > 0 trains LoRA factors on the linear
    # layers matched by lora_targets instead of the full weights (rank 0: full fine-tuning, `train`/`freeze` apply).
    rank: int = 0
    lora_alpha: float = 0.0          # scale alpha / rank of the factors' product (0: alpha = rank)
    lora_targets: tuple[str, ...] = ()  # regular expressions on linear-layer names (empty: every block's layers)
    lora_learning_rate: float = 1e-3  # AdamW on the factors (learning_rate is for full fine-tuning)
    # How a rank > 0 run makes its factors (lowrank.method_for): "compress" fine-tunes the full weights, then cuts
    # each targeted linear layer's change to the rank by SVD (far fewer harmless prompts collapsed on MiniLM,
    # docs/lowrank.md; full fine-tuning's memory); "adapters" trains the factors directly (the memory of the 4-8B
    # encoders); "auto": adapters for T5 / LLM encoders, compress for the rest.
    lowrank_method: str = "auto"
    # Memory (docs/encoders.md, "Memory"): what a 4-8B encoder needs to fit one GPU. "auto" chooses by the run: on a
    # GPU, a low-rank run of a T5 / LLM encoder keeps its frozen weights in bfloat16 and recomputes each block's
    # activations in the backward pass; everything else trains as before (float32, activations kept).
    base_dtype: str = "auto"         # auto | float32 | bfloat16 | float16: the frozen weights of a low-rank run
    gradient_checkpointing: str = "auto"  # auto | on | off: keep only each block's input, recompute the rest

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be at least 1")
        if self.learning_rate <= 0:
            raise ConfigError("learning_rate must be positive")
        if not 0.0 <= self.pair_share <= 4.0 or not 0.0 <= self.mine_share <= 1.0 or self.mine_every < 0 \
                or self.mine_pool < 1 or self.mine_sample < 0 or not 0.0 <= self.preserve_share <= 4.0 \
                or self.preserve_pool < 1:
            raise ConfigError("pair_share and preserve_share must be in [0, 4], mine_share in [0, 1], mine_every >= 0, "
                              "mine_sample >= 0, mine_pool and preserve_pool >= 1")
        if self.rank < 0 or self.lora_alpha < 0 or self.lora_learning_rate <= 0:
            raise ConfigError("rank and lora_alpha must be >= 0 and lora_learning_rate positive")
        if self.lowrank_method not in lowrank.METHODS:
            raise ConfigError(f"lowrank_method must be one of {', '.join(lowrank.METHODS)}, not {self.lowrank_method!r}")
        if self.rank > 0 and self.lowrank_method == "compress" and self.base_dtype not in ("auto", "float32"):
            raise ConfigError(f"base_dtype {self.base_dtype} needs adapters (lowrank_method adapters): compress "
                              "fine-tunes the full weights, whose small updates that precision would lose")
        if self.rank > 0 and self.train:
            raise ConfigError("train selects parameters for full fine-tuning; with a rank, choose layers with "
                              "lora_targets")
        if self.lr_schedule not in ("constant", "cosine") or not 0.0 <= self.lr_floor <= 1.0:
            raise ConfigError(f"lr_schedule must be constant or cosine (not {self.lr_schedule!r}) and lr_floor in [0, 1]")
        if not 0.0 < self.checkpoint_share <= 1.0:
            raise ConfigError(f"checkpoint_share must be in (0, 1] (1: a checkpoint every checkpoint_every steps), "
                              f"not {self.checkpoint_share}")
        if self.base_dtype not in _BASE_DTYPES:
            raise ConfigError(f"base_dtype must be one of {', '.join(_BASE_DTYPES)}, not {self.base_dtype!r}")
        if self.base_dtype not in ("auto", "float32") and self.rank == 0:
            raise ConfigError(f"base_dtype {self.base_dtype} needs low-rank training (a rank): a full fine-tuning "
                              "update smaller than the weights' precision would be lost")
        if self.gradient_checkpointing not in ("auto", "on", "off"):
            raise ConfigError(f"gradient_checkpointing must be auto, on or off, not {self.gradient_checkpointing!r}")
        if self.selection not in ("bars", "balanced"):
            raise ConfigError(f"selection must be bars or balanced, not {self.selection!r}")
        if self.safe_cos_weight < 0 or not -1.0 <= self.safe_cos_floor <= 1.0:
            raise ConfigError("safe_cos_weight must be >= 0 and safe_cos_floor in [-1, 1]")
        if self.safe_distance not in ("relative_l2", "l2", "squared_l2"):
            raise ConfigError(f"safe_distance must be relative_l2, l2 or squared_l2, not {self.safe_distance!r}")
        self.train = tuple(self.train)
        self.freeze = tuple(self.freeze)
        self.lora_targets = tuple(self.lora_targets)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AlignConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known})


@dataclass
class ProgressEvent:
    step: int
    total: int
    phase: str                       # "originals" (step/total: prompts encoded), "train", "eval", "done"
    loss: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    message: str = ""


@dataclass
class AlignResult:
    family: str
    deltas: dict[str, dict[str, torch.Tensor]]  # encoder -> HF parameter name -> (aligned - original), float32, CPU
    config: AlignConfig
    history: list[dict[str, float]]
    validation: list[dict[str, float]]
    best_step: int
    steps_run: int
    stopped_early: bool
    seconds: float
    prompt_hashes: dict[str, str] = field(default_factory=dict)
    # Low-rank runs: encoder -> HF weight name -> (up, down, alpha); ``deltas`` holds their expansion.
    factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- helpers

class CheckpointBudget:
    """Whether a resume checkpoint is due, so that writing them takes at most ``share`` of a run's time.

    A checkpoint holds every trained weight three or four times (weights, two AdamW moments, the kept check's
    weights): 1.4-1.8 GiB for CLIP-L, written and synced in about 5 s on a 2-core CPU, while 25 steps on an H100 take
    under 2 s. The first one is always written; after that one is skipped until the time since the last write is at
    least ``(1 - share) / share`` times that write's length.
    A crash then loses at most ``checkpoint_every`` steps or that much time, whichever is more.
    """

    def __init__(self, share: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.share, self.clock = share, clock
        self.last_end: float | None = None
        self.last_length = 0.0

    def due(self) -> bool:
        if self.share >= 1.0 or self.last_end is None:
            return True
        return self.clock() - self.last_end >= self.last_length * (1.0 - self.share) / self.share

    @contextmanager
    def timed(self) -> Iterator[None]:
        begin = self.clock()
        yield
        self.last_end = self.clock()
        self.last_length = self.last_end - begin


def learning_rate_factor(step: int, config: AlignConfig) -> float:
    """The share of the learning rate that step ``step`` (0-based) uses: 1 for ``constant``; for ``cosine`` half a
    cosine from 1 at the first step to ``lr_floor`` at the last planned one. The late steps then make small moves,
    so the weights settle instead of swinging between the unsafe and the harmless terms when training ends."""
    if config.lr_schedule == "constant" or config.steps <= 1:
        return 1.0
    progress = step / (config.steps - 1)
    return config.lr_floor + (1.0 - config.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def trainable_copy(model: nn.Module, config: AlignConfig, family: str = "", adapter_targets: Sequence[str] = (),
                   dtype: torch.dtype = torch.float32, checkpointing: bool = False,
                   device: torch.device | str | None = None, spec: EncoderSpec | None = None
                   ) -> tuple[nn.Module, list[tuple[str, nn.Parameter]]]:
    """The copy a run trains (``model`` is never touched) and its trained parameters: low-rank factors in float32
    when ``config.rank`` > 0, over frozen weights of ``dtype`` (:func:`memory.memory_plan`); else the weights
    ``config`` selects, in float32. ``checkpointing``: recompute the blocks' activations in the backward pass.
    A low-rank copy whose frozen weights would equal ``model``'s (same dtype, already on ``device``) shares them.
    With ``spec``, layers above the deepest hidden state the host reads are left out of the copy
    (:func:`models.trim_unread_layers`)."""
    if config.rank > 0 and memory.holds_as(model, dtype, device):
        # Low rank trains only new factors: the copy shares the frozen weights instead of holding a second set (a
        # float32 Gemma-2-2B is 10 GB; two of them beside a host's own copy do not fit a 24 GB machine)
        trainee = memory.share_weights(model)
    else:
        trainee = copy.deepcopy(model).float() if dtype == torch.float32 else memory.copy_as(model, dtype)
    if spec is not None:
        trim_unread_layers(trainee, spec)
    trainee.eval()
    trainee.requires_grad_(False)
    if checkpointing:
        memory.checkpoint_blocks(trainee)
    if config.rank > 0:  # LoRA factors on the targeted linear layers (the config's, else the family's); weights frozen
        targets = _factor_targets(config, adapter_targets)
        return trainee, lowrank.attach_adapters(trainee, config.rank, config.lora_alpha or config.rank, targets, family)
    chosen = iter_named_trainable(trainee, config.train or None, config.freeze)
    for _, param in chosen:
        param.requires_grad_(True)
    return trainee, chosen


def _factor_targets(config: AlignConfig, adapter_targets: Sequence[str] = ()) -> tuple[str, ...]:
    """The linear layers a low-rank run gives factors: the config's, else the family's, else every block's."""
    return tuple(config.lora_targets) or tuple(adapter_targets) or lowrank.DEFAULT_TARGETS


def _check_training_memory(encoders: EncoderSet, config: AlignConfig, device: torch.device | str) -> None:
    """Refuse (:class:`InsufficientMemory`) a CPU run whose training copies cannot fit the free memory: full
    fine-tuning's copy of each encoder plus a gradient and AdamW's two moments per trained weight; a low-rank copy
    in another dtype than the original. (A low-rank copy that shares the weights needs only its factors.)"""
    if torch.device(device).type != "cpu":
        return  # the device's memory is the host's (ComfyUI, Forge) or torch's to manage
    needed = 0
    for spec in encoders.profile.encoders:
        model = encoders.models[spec.name]
        dtype, _ = memory.memory_plan(config, spec.arch, device)
        size = sum(p.numel() for p in model.parameters())
        if config.rank > 0:
            needed += 0 if memory.holds_as(model, dtype, device) else size * torch.finfo(dtype).bits // 8
        else:
            trained = sum(p.numel() for _, p in iter_named_trainable(model, config.train or None, config.freeze))
            needed += 4 * size + 12 * trained
    if needed:
        memory.ensure_host_memory(needed, f"training ({'low-rank copy' if config.rank > 0 else 'full fine-tuning'} of "
                                          f"the {encoders.profile.title} text encoders)",
                                  "free memory, use a machine with more, or train low-rank adapters (rank > 0, "
                                  "lowrank_method adapters: --rank 8 --lowrank-method adapters), which share the "
                                  "encoder's weights instead of copying them")


# Encoders whose stored originals would grow past host memory (Flux's T5-XXL: 4 MiB a prompt in float32, 30 GiB
# for a default run's prompts): with low-rank adapters their originals are recomputed, not stored.
_RECOMPUTED_ARCHS = memory.LARGE_ARCHS


class _AdaptersOff:
    """Within it, ``model``'s low-rank adapters add exactly nothing (their scale is 0): the original encoder."""

    def __init__(self, model: nn.Module):
        self.modules = [m for m in model.modules() if hasattr(m, "lora_up")]

    def __enter__(self) -> None:
        self.scales = [m.lora_scale for m in self.modules]
        for m in self.modules:
            m.lora_scale = 0.0

    def __exit__(self, *exc: Any) -> None:
        for m, scale in zip(self.modules, self.scales):
            m.lora_scale = scale


class OriginalOutputs:
    """The original encoder's consumed outputs for the prompts a run will use, encoded once.

    ``model`` must still hold the original weights when this is built. ``used`` lists the indices of
    ``prompts`` the run will sample (a short run does not pay for prompts it never sees). Masked
    encoders pad every prompt's outputs with zeros to the longest prompt; :meth:`gather` cuts them to
    the length of the batch at hand (positions past a prompt's end are masked out of every loss).

    T5 and Gemma-2 trained low-rank (``model`` carries adapters) store nothing: :meth:`gather` runs ``model``
    with its adapters off, which is the original bit for bit (``output + 0 * low``), for one more forward pass
    without gradients per half-step and no memory that grows with the prompts (docs/encoders.md).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, prompts: Sequence[str], spec: EncoderSpec,
                 device: torch.device, store: torch.device, used: Sequence[int] | None = None, chunk: int = 64,
                 on_chunk: Callable[[int], None] | None = None):
        used = sorted(set(range(len(prompts)) if used is None else used))
        self.row: dict[int, int] = {}
        self.spec = spec
        self.recompute = spec.arch in _RECOMPUTED_ARCHS and any(hasattr(m, "lora_up") for m in model.modules())
        if self.recompute:
            self.model, self.tokenizer, self.prompts = model, tokenizer, list(prompts)
            self.outputs, self.pooled = [], None
            return
        outs: list[list[torch.Tensor]] = [[] for _ in spec.targets]
        pooled: list[torch.Tensor] = []
        with torch.no_grad():
            for rows, batch in length_batches(tokenizer, [prompts[i] for i in used], spec, device, chunk):
                self.row.update((used[r], len(self.row)) for r in rows)
                values, pool = consumed_outputs(model, batch, spec)
                for kept, value in zip(outs, values):
                    kept.append(value.float().to(store))
                if pool is not None:
                    pooled.append(pool.float().to(store))
                if on_chunk is not None:  # progress, and the chance to cancel: a long run encodes thousands here
                    on_chunk(len(rows))
        length = max(part.shape[1] for part in outs[0])
        self.outputs = [torch.cat([nn.functional.pad(p, (0, 0, 0, length - p.shape[1])) for p in parts])
                        for parts in outs]
        self.pooled = torch.cat(pooled) if pooled else None

    def gather(self, indices: Sequence[int], length: int, device: torch.device
               ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        if self.recompute:
            with torch.no_grad(), _AdaptersOff(self.model):
                batch = tokenize(self.tokenizer, [self.prompts[i] for i in indices], self.spec, device)
                values, pooled = consumed_outputs(self.model, batch, self.spec)
            return [v.float()[:, :length] for v in values], (pooled.float() if pooled is not None else None)
        index = torch.as_tensor([self.row[i] for i in indices], dtype=torch.long, device=self.outputs[0].device)
        outs = [o.index_select(0, index)[:, :length].to(device, non_blocking=True) for o in self.outputs]
        pooled = self.pooled.index_select(0, index).to(device) if self.pooled is not None else None
        return outs, pooled


def _step_batches(step: int, config: AlignConfig, unsafe_count: int, safe_count: int, pair_count: int = 0,
                  hard: Sequence[int] = (), preserve_count: int = 0) -> tuple[list[int], list[int]]:
    """Indices of the unsafe and safe training prompts of ``step``: fixed by seed, step and the mined ``hard``
    list (resumable).

    Pools are laid out as [plain prompts..., pair sides..., (safe only) word salads...]: pair ``k`` is unsafe
    index ``unsafe_count + k`` and safe index ``safe_count + k``, drawn together so the two sides of a pair
    share the step. A share of the plain safe draws is replaced by draws from ``hard`` (indices into the safe
    pool); word salad ``j`` is safe index ``safe_count + pair_count + j``.
    """
    step_rng = random.Random(config.seed * 1_000_003 + step)
    unsafe = step_rng.sample(range(unsafe_count), min(config.batch_size, unsafe_count))
    safe = step_rng.sample(range(safe_count), min(config.batch_size, safe_count))
    if pair_count and config.pair_share > 0:
        pairs = step_rng.sample(range(pair_count), min(pair_count, max(1, round(config.pair_share * config.batch_size))))
    else:
        pairs = []
    if preserve_count and config.preserve_share > 0:
        salads = step_rng.sample(range(preserve_count),
                                 min(preserve_count, max(1, round(config.preserve_share * config.batch_size))))
    else:
        salads = []
    if hard and config.mine_share > 0:  # its own stream: what mining adds never shifts the draws above
        mine_rng = random.Random(config.seed * 1_000_003 + step + 7_919_000_000)
        mined = mine_rng.sample(list(hard), min(len(hard), round(config.mine_share * len(safe))))
        safe = list(dict.fromkeys(mined + safe))[:len(safe)]
    unsafe += [unsafe_count + k for k in pairs]
    safe += [safe_count + k for k in pairs] + [safe_count + pair_count + j for j in salads]
    return unsafe, safe


def _token_counts(tokenizer: Any, prompts: Sequence[str], spec: EncoderSpec) -> list[int]:
    """Positions each prompt takes in a batch (CLIP: always 77)."""
    if spec.kind == "clip" or not prompts:
        return [77] * len(prompts)
    return [len(ids) for ids in tokenizer(list(prompts), truncation=True, max_length=max_tokens(tokenizer, spec))["input_ids"]]


def _length_groups(batch: Sequence[int], lengths: Sequence[int], most: int = 4, overhead: int = 64) -> list[list[int]]:
    """``batch`` (indices into ``lengths``, token counts) split into at most ``most`` groups of similar length.

    Each group is one forward and backward pass padded to its own longest prompt. A step's safe half mixes word
    salads of ~10 tokens with scene descriptions of up to 45, so one pass would spend about half its work on
    padding. The split minimises padded positions plus ``overhead`` positions per extra pass (exact dynamic
    programming over the length-sorted batch); equal lengths (CLIP: always 77) give one group.
    """
    order = sorted(batch, key=lambda i: lengths[i])
    n = len(order)
    size = [lengths[i] for i in order]
    # cost[k][j]: least cost of the first j prompts in k groups; a group [i, j) costs (j - i) * size[j - 1]
    inf = float("inf")
    cost = [[0.0] + [inf] * n] + [[inf] * (n + 1) for _ in range(most)]
    cut = [[0] * (n + 1) for _ in range(most + 1)]
    for k in range(1, most + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                value = cost[k - 1][i] + (j - i) * size[j - 1] + (overhead if k > 1 else 0)
                if value < cost[k][j]:
                    cost[k][j], cut[k][j] = value, i
    best = min(range(1, most + 1), key=lambda k: cost[k][n]) if n else 0
    groups, j = [], n
    for k in range(best, 0, -1):
        groups.append(order[cut[k][j]:j])
        j = cut[k][j]
    return groups[::-1]


def _pass_overhead(device: torch.device) -> int:
    """What one more forward and backward pass of a batch half costs, in padded positions (``_length_groups``).

    On a CPU a pass costs its arithmetic, so padding is what to save. On a GPU a step is bound by launching kernels,
    not by arithmetic: Qwen3-4B's step on an H200 kept the GPU busy 0.6 s of 4.8 (``benchmarks/results/
    llm_gpu_profile.txt``: 75,000 launches a step, six passes of 36 blocks), while padding a half to its longest
    prompt adds positions the GPU runs in parallel. So there each half is one pass."""
    return 64 if device.type == "cpu" else 1 << 30


def _store_device(device: torch.device) -> torch.device:
    # Device memory is the scarce one on a GPU; a step needs only its own batch of originals there.
    return torch.device("cpu") if device.type == "cuda" else device


# --------------------------------------------------------------------------------------- the loop

def training_pools(prompts: PromptSets, tokenizer: Any, config: AlignConfig, strip_weighting: bool = False
                   ) -> tuple[list[str], list[str], list[tuple[str, str]], list[str]]:
    """What a run trains on: the unsafe and safe prompts of the training split, its minimal pairs, and the word
    salads of ``tokenizer``'s vocabulary it preserves (none when ``preserve_share`` is 0). ``strip_weighting``: as
    hosts encode them, without prompt-weighting syntax."""
    unsafe_train = prompts.unsafe_part("train")
    safe_train = prompts.safe_part("train")
    pair_train = prompts.pair_part("train")
    if strip_weighting:
        from .encoding import strip_weighting_syntax

        unsafe_train = [strip_weighting_syntax(p) for p in unsafe_train]
        safe_train = [strip_weighting_syntax(p) for p in safe_train]
        pair_train = [(strip_weighting_syntax(u), strip_weighting_syntax(h)) for u, h in pair_train]
    salads: list[str] = []
    if config.preserve_share > 0:
        salads = word_salads(vocabulary_words(tokenizer), unsafe_words(prompts), config.preserve_pool, config.seed)
    return unsafe_train, safe_train, pair_train, salads


def align(encoders: EncoderSet, prompts: PromptSets, config: AlignConfig | None = None,
          progress: Callable[[ProgressEvent], None] | None = None,
          should_cancel: Callable[[], bool] | None = None, device: torch.device | str | None = None,
          resume_path: str | os.PathLike | None = None, strip_weighting: bool = False,
          remove_resume: bool = True, processes: Processes | None = None) -> AlignResult:
    """Align every encoder of ``encoders`` on ``prompts``; the originals are never modified.

    ``should_cancel`` is polled between steps; when it returns True the run stops with
    :class:`AlignmentCancelled` (after writing a resume checkpoint if ``resume_path`` is given and
    ``config.checkpoint_every`` > 0). With ``resume_path`` pointing to an existing checkpoint made
    with the same settings and prompts, training continues from it. The checkpoint is removed at the end, unless
    ``remove_resume`` is False: then a last checkpoint marks the run finished (a crash after it loses no step)
    and the caller removes it once the result is safely stored (:func:`~safetext_core.pipeline.run_alignment`
    does).

    ``processes``: the processes this run is one of (:meth:`Processes.from_environment
    <safetext_core.distributed.Processes.from_environment>` under ``accelerate launch``): each step's batch is
    shared out, gradients summed, mining and validation decided on the main process, which alone reports progress
    and writes checkpoints (:mod:`safetext_core.distributed`). Default: one process. ``device`` defaults to the
    process's own (``cuda:<local rank>`` on GPUs).
    """
    config = config or AlignConfig()
    prompts.validate()
    method = lowrank.method_for(config, [spec.arch for spec in encoders.profile.encoders])
    # Weights cut to the rank at the end: the names matched now, so a bad target fails before training does.
    compressed: dict[str, list[str]] = {}
    if method == "compress":
        for spec in encoders.profile.encoders:
            modules = lowrank.check_targets(encoders.models[spec.name],
                                            _factor_targets(config, getattr(spec, "adapter_targets", ())),
                                            encoders.family)
            compressed[spec.name] = [name + ".weight" for name in modules]
    # A compressing run trains exactly as full fine-tuning does (memory, copy, learning rate); only its end differs.
    trained_as = dataclasses.replace(config, rank=0) if method == "compress" else config
    processes = processes or Processes()
    device = torch.device(device or processes.device or "cpu")
    started = time.perf_counter()
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)

    unsafe_train, safe_train, pair_train, salads = training_pools(
        prompts, encoders.tokenizers[encoders.profile.encoders[0].name], config, strip_weighting)

    def as_trained(texts: Sequence[str]) -> list[str]:  # validation and held-out prompts get what training gets
        from .encoding import strip_weighting_syntax

        return [strip_weighting_syntax(p) for p in texts] if strip_weighting else list(texts)

    # Pools: plain prompts first, then the pairs' sides (pair k: unsafe n_u + k, safe n_s + k).
    n_u, n_s, n_p = len(unsafe_train), len(safe_train), len(pair_train)
    unsafe_train = unsafe_train + [u for u, _ in pair_train]
    safe_train = safe_train + [h for _, h in pair_train] + salads
    for spec in encoders.profile.encoders:
        tok = encoders.tokenizers[spec.name]
        check_prompts(unsafe_train, tok, spec, "the unsafe training prompts")
        check_prompts(safe_train, tok, spec, "the safe training prompts")
        for part in ("validation", "heldout"):  # the same rules in every split: nothing is silently truncated
            for name, texts in prompts.evaluation_sets(part).items():
                check_prompts(as_trained(texts), tok, spec, f"the {name.replace('_', ' ')} prompts ({part} split)")

    trainees: dict[str, nn.Module] = {}
    chosen: dict[str, list[tuple[str, nn.Parameter]]] = {}
    anchors: dict[str, tuple[list[torch.Tensor], torch.Tensor | None]] = {}
    originals: dict[str, tuple[OriginalOutputs, OriginalOutputs]] = {}
    lengths: dict[str, tuple[list[int], list[int]]] = {}  # token counts of the safe and unsafe pools
    store = _store_device(device)
    # Only the prompts the planned steps will sample need their originals (all of them in a long run).
    unsafe_used: set[int] = set()
    safe_used: set[int] = set()
    for planned in range(config.steps):
        unsafe_indices, safe_indices = _step_batches(planned, config, n_u, n_s, n_p, (), len(salads))
        unsafe_used.update(processes.shard(unsafe_indices))
        safe_used.update(processes.shard(safe_indices))
    if 0 < config.mine_every < config.steps:  # mining will run, and may put any safe prompt in a batch
        safe_used = set(range(len(safe_train)))
    # Encoding the originals of a long run takes minutes on a CPU: report it, and let cancel stop it.
    to_encode = len(encoders.profile.encoders) * (len(safe_used) + len(unsafe_used))
    encoded = 0

    def originals_encoded(count: int) -> None:
        nonlocal encoded
        encoded += count
        if progress is not None and processes.is_main:
            progress(ProgressEvent(encoded, to_encode, "originals",
                                   message=f"encoding the original outputs: {encoded}/{to_encode} prompts"))
        # Several processes encode different numbers of chunks: they agree on a cancel at the first step instead.
        if should_cancel is not None and not processes.distributed and should_cancel():
            raise AlignmentCancelled(0)

    _check_training_memory(encoders, trained_as, device)
    for spec in encoders.profile.encoders:
        dtype, checkpointing = memory.memory_plan(trained_as, spec.arch, device)
        trainee, params = trainable_copy(encoders.models[spec.name], trained_as, encoders.family,
                                         getattr(spec, "adapter_targets", ()), dtype, checkpointing, device, spec)
        if not params:
            raise ConfigError(f"no parameter of {spec.name} matches the training selection {config.train or 'all'}")
        trainee = trainee.to(device)
        trainees[spec.name], chosen[spec.name] = trainee, params
        tok = encoders.tokenizers[spec.name]
        # The trainee has not been updated yet: it is the original encoder (in float32, or its frozen weights' dtype).
        batch = tokenize(tok, [config.anchor_prompt], spec, device)
        with torch.no_grad():
            outs, pooled = consumed_outputs(trainee, batch, spec)
        if spec.kind != "clip":  # masked encoders: the anchor's mean real token, at every position
            m = batch["mask"].unsqueeze(-1)
            outs = [((o * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)) for o in outs]
        anchors[spec.name] = (outs, pooled)
        originals[spec.name] = (OriginalOutputs(trainee, tok, safe_train, spec, device, store, safe_used,
                                                on_chunk=originals_encoded),
                                OriginalOutputs(trainee, tok, unsafe_train, spec, device, store, unsafe_used,
                                                on_chunk=originals_encoded))
        lengths[spec.name] = (_token_counts(tok, safe_train, spec), _token_counts(tok, unsafe_train, spec))

    validator, validating = None, False
    if config.eval_every > 0:
        held = prompts.evaluation_sets("validation")
        val_sets = {"unsafe": prompts.unsafe_part("validation"), "safe": held.get("safe", []),
                    "near_miss": held.get("near_miss", []), "pair_harmless": held.get("pair_harmless", [])}
        val_sets = {k: as_trained(v) for k, v in val_sets.items() if v}
        validating = "unsafe" in val_sets
        if validating and processes.is_main:  # validation runs there; the others get its figures
            validator = Validator(encoders, val_sets, device, config.threshold, originals=trainees)

    trained = [p for ps in chosen.values() for _, p in ps]
    lr = config.lora_learning_rate if method == "adapters" else config.learning_rate
    try:  # fused AdamW: one pass over all weights, no temporaries (CUDA; CPU since torch 2.4)
        optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=config.weight_decay, fused=True)
        fused = True
    except (RuntimeError, ValueError, TypeError):
        optimizer = torch.optim.AdamW(trained, lr=lr, weight_decay=config.weight_decay)
        fused = False
    hashes = prompts.hashes()
    history: list[dict[str, float]] = []
    validation: list[dict[str, float]] = []
    best: dict[str, dict[str, torch.Tensor]] | None = None
    best_step, best_score, start = -1, -math.inf, 0
    hard: list[int] = []  # the safe training prompts that moved most at the last mining
    resume = Path(resume_path) if resume_path else None
    finished = finished_early = False  # set by a checkpoint written after training ended

    def mine(step: int) -> list[int]:
        """Indices of the ``mine_pool`` safe training prompts whose conditioning moved most (1 - cosine), among a
        random sample of ``mine_sample`` of them (fixed by seed and step) and the last most-moved ones.

        Ranking every safe prompt at every mining took a third of a default run (5,600 prompts, 11 times); the
        most-moved ones are carried from one mining to the next, so the sample only has to find new ones.
        """
        everything = len(safe_train)
        if 0 < config.mine_sample < everything:
            mine_rng = random.Random(config.seed * 1_000_003 + step + 3_571_000_000)
            candidates = sorted(set(mine_rng.sample(range(everything), config.mine_sample)) | set(hard))
        else:
            candidates = list(range(everything))
        drift = torch.zeros(len(candidates))
        with torch.no_grad():
            for spec in encoders.profile.encoders:
                tok, safe_originals = encoders.tokenizers[spec.name], originals[spec.name][0]
                for rows, tokens in length_batches(tok, [safe_train[i] for i in candidates], spec, device):
                    new, _ = consumed_outputs(trainees[spec.name], tokens, spec)
                    old, _ = safe_originals.gather([candidates[r] for r in rows], tokens["input_ids"].shape[1], device)
                    drift[rows] += (1.0 - cosine(new[0], old[0], content_mask(tokens["mask"], spec))).cpu()
        return [candidates[int(i)] for i in torch.argsort(drift, descending=True)[:config.mine_pool]]

    if resume is not None and resume.is_file():
        expected = {f"param/{e}/{n}": tuple(p.shape) for e, ps in chosen.items() for n, p in ps}
        start, saved, history, validation, best_step, state = load_resume(resume, config, hashes, expected)
        hard = list(state.get("hard", []))
        finished, finished_early = bool(state.get("finished")), bool(state.get("stopped_early"))
        with torch.no_grad():
            for encoder, params in chosen.items():
                for name, param in params:
                    param.copy_(saved[f"param/{encoder}/{name}"].to(device))
                    state = {k: saved[f"adam/{encoder}/{name}/{k}"].to(device) for k in ("exp_avg", "exp_avg_sq")
                             if f"adam/{encoder}/{name}/{k}" in saved}
                    if state:
                        state["step"] = torch.tensor(float(saved[f"adamstep/{encoder}/{name}"][0]),
                                                     dtype=torch.float32, device=device if fused else "cpu")
                        optimizer.state[param] = state
        best = {}
        for key, value in saved.items():
            if key.startswith("best/"):
                _, encoder, name = key.split("/", 2)
                best.setdefault(encoder, {})[name] = value
        best = best or None
        if validation:
            best_score = max(score(v, config) for v in validation)

    processes.start_from_main(trained)  # every process trains the same weights from here on

    def snapshot() -> dict[str, dict[str, torch.Tensor]]:
        return {e: {n: p.detach().to("cpu", copy=True) for n, p in ps} for e, ps in chosen.items()}

    def emit(event: ProgressEvent) -> None:
        if progress is not None and processes.is_main:
            progress(event)

    writes = CheckpointBudget(config.checkpoint_share)
    stopped_early = finished_early
    step = start - 1  # stays so when no step runs (resumed from a finished checkpoint)
    for step in range(start, start if finished else config.steps):
        if processes.any(should_cancel is not None and should_cancel()):
            kept = None
            if resume is not None and config.checkpoint_every > 0:
                if processes.is_main:
                    save_resume(resume, step, config, hashes, history, validation, chosen, optimizer, best,
                                best_step, {"hard": hard})
                kept = str(resume)
            raise AlignmentCancelled(step, kept)
        if config.mine_every > 0 and step > 0 and step % config.mine_every == 0:
            hard = processes.from_main(lambda: mine(step))
        unsafe_batch, safe_batch = _step_batches(step, config, n_u, n_s, n_p, hard, len(salads))
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        parts = {name: torch.zeros((), device=device) for name in ("L_u", "cos_u", "anchor")}
        # Inputs and stored originals first: a copy from pageable host memory waits for the GPU, so
        # doing every copy before any compute is queued keeps the GPU busy for the rest of the step.
        inputs = {}
        for spec in encoders.profile.encoders:
            tok = encoders.tokenizers[spec.name]
            halves = []
            for batch, pool, stored, counts in ((safe_batch, safe_train, originals[spec.name][0], lengths[spec.name][0]),
                                                (unsafe_batch, unsafe_train, originals[spec.name][1], lengths[spec.name][1])):
                groups = []
                for group in _length_groups(processes.shard(batch), counts, overhead=_pass_overhead(device)):
                    tokens = tokenize(tok, [pool[i] for i in group], spec, device)
                    groups.append((tokens, stored.gather(group, tokens["input_ids"].shape[1], device)))
                halves.append(groups)
            inputs[spec.name] = halves
        for spec in encoders.profile.encoders:
            trainee = trainees[spec.name]
            anchor_outs, anchor_pooled = anchors[spec.name]
            safe_groups, unsafe_groups = inputs.pop(spec.name)
            # Safe half, then unsafe half, each in groups of similar length with one backward pass per group (one
            # group's activations alive at a time). Every term is per prompt, so summing a group's terms and dividing
            # by the half's size gives exactly the gradient of the half's mean.
            count = len(safe_batch)
            for tokens, (old, old_pooled) in safe_groups:
                new, new_pooled = consumed_outputs(trainee, tokens, spec)
                loss = torch.zeros((), device=device)
                for target, n, o in zip(spec.targets, new, old):
                    l_u = safe_distance(n, o, tokens["mask"], config.safe_distance, config.smoothing).sum() / count
                    if config.safe_cos_weight:
                        hinge = token_cosine_shortfall if config.safe_cos_per_token else cosine_shortfall
                        short = hinge(n, o, content_mask(tokens["mask"], spec), config.safe_cos_floor)
                        l_u = l_u + config.safe_cos_weight * short.sum() / count
                    loss = loss + target.weight * config.safe_weight * l_u
                    parts["L_u"] += l_u.detach() * target.weight
                if spec.pooled_weight > 0 and new_pooled is not None:
                    l_u = safe_distance(new_pooled, old_pooled, None, config.safe_distance, config.smoothing).sum() / count
                    loss = loss + spec.pooled_weight * config.safe_weight * l_u
                if loss.requires_grad:  # False when no trained weight feeds this output (e.g. layers above it)
                    loss.backward()
                total = total + loss.detach()
                del new, new_pooled, loss

            count = len(unsafe_batch)
            for tokens, (old, old_pooled) in unsafe_groups:
                new, new_pooled = consumed_outputs(trainee, tokens, spec)
                mask = content_mask(tokens["mask"], spec)
                loss = torch.zeros((), device=device)
                for target, n, o, anchor in zip(spec.targets, new, old, anchor_outs):
                    cos_u = cosine(n, o, mask)
                    c_u = (torch.relu(cos_u - config.cos_margin) if config.cos_margin > -1 else cos_u).sum() / count
                    a_u = anchor_distance(n, anchor, mask).sum() / count if config.anchor_weight else torch.zeros_like(c_u)
                    loss = loss + target.weight * (config.lam * c_u + config.anchor_weight * a_u)
                    parts["cos_u"] += cos_u.detach().sum() / count * target.weight
                    parts["anchor"] += a_u.detach() * target.weight
                if spec.pooled_weight > 0 and new_pooled is not None:
                    cos_u = cosine(new_pooled, old_pooled, None)
                    c_u = (torch.relu(cos_u - config.cos_margin) if config.cos_margin > -1 else cos_u).sum() / count
                    a_u = anchor_distance(new_pooled, anchor_pooled, None).sum() / count if config.anchor_weight \
                        else torch.zeros_like(c_u)
                    loss = loss + spec.pooled_weight * (config.lam * c_u + config.anchor_weight * a_u)
                if loss.requires_grad:  # False when no trained weight feeds this output (e.g. layers above it)
                    loss.backward()
                total = total + loss.detach()
                del new, new_pooled, loss
        # One host sync per step; a non-finite loss stops before the optimiser touches the weights. Several
        # processes: the whole batch's loss and gradients are the sums of their shares (each divided by the batch).
        values = processes.sum(torch.stack([total, *parts.values()])).tolist()
        if not math.isfinite(values[0]):
            raise FloatingPointError(f"the loss became {values[0]} at step {step}; lower the learning rate")
        parts = dict(zip(parts, values[1:]))
        processes.sum_gradients(trained)
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for ps in chosen.values() for _, p in ps], config.grad_clip)
        for group in optimizer.param_groups:  # from the step alone, so a resumed run follows the same schedule
            group["lr"] = lr * learning_rate_factor(step, config)
        optimizer.step()
        record = {"step": step + 1, "loss": values[0], **parts}
        history.append(record)
        emit(ProgressEvent(step + 1, config.steps, "train", record["loss"], parts))

        last = step + 1 == config.steps
        if validating and ((step + 1) % config.eval_every == 0 or last):
            figures = processes.from_main(lambda: validator(trainees))
            figures["step"] = step + 1
            validation.append(figures)
            step_score = score(figures, config)
            if step_score > best_score:
                best_score, best, best_step = step_score, snapshot(), step + 1
            emit(ProgressEvent(step + 1, config.steps, "eval", record["loss"], parts, figures))
            if config.early_stop and feasible(figures, config) and \
                    figures.get("unsafe_share_moved", 0.0) >= config.target_unsafe_share:
                stopped_early = not last
                break
        if resume is not None and config.checkpoint_every > 0 and (step + 1) % config.checkpoint_every == 0 \
                and processes.is_main and writes.due():
            with writes.timed():
                save_resume(resume, step + 1, config, hashes, history, validation, chosen, optimizer, best, best_step,
                            {"hard": hard})
        crash_point("step", step + 1)  # the fault suite's kill "mid-training" (a no-op unless it asks)

    if best is None:
        best_step = step + 1
    if resume is not None and config.checkpoint_every > 0 and not finished and not remove_resume and processes.is_main:
        # Training is over: a crash from here on (held-out figures, the final write) loses no step.
        save_resume(resume, len(history), config, hashes, history, validation, chosen, optimizer, best, best_step,
                    {"hard": hard, "finished": True, "stopped_early": stopped_early})
    final = best if best is not None else snapshot()
    deltas: dict[str, dict[str, torch.Tensor]] = {}
    factors: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, float]]] = {}
    for encoder, params in final.items():
        if method == "adapters":  # the file stores the factors; everything else uses their expansion
            factors[encoder] = lowrank.factors_from_params(params, config.lora_alpha or config.rank)
            if encoders.spec(encoder).arch in memory.LARGE_ARCHS:  # expanded when read: not 4 bytes a weight at once
                deltas[encoder] = lowrank.Expansions(factors[encoder])
            else:
                deltas[encoder] = {name: lowrank.expand(*f) for name, f in factors[encoder].items()}
            continue
        original = dict(encoders.models[encoder].named_parameters())
        deltas[encoder] = {}
        for name, value in params.items():
            delta = value.float() - original[name].detach().to("cpu", torch.float32)
            if torch.count_nonzero(delta):
                deltas[encoder][name] = delta.contiguous()
        if method == "compress":  # the targeted linear layers' changes cut to the rank; the rest left out
            factors[encoder] = lowrank.compress(deltas[encoder], compressed[encoder], config.rank)
            deltas[encoder] = {name: lowrank.expand(*f) for name, f in factors[encoder].items()}
    emit(ProgressEvent(step + 1, config.steps, "done", history[-1]["loss"] if history else None))
    del trainees, optimizer
    if remove_resume and resume is not None and processes.is_main and resume.is_file():
        resume.unlink()  # finished (run_alignment removes it itself, once the file is in place)
    return AlignResult(family=encoders.family, deltas=deltas, config=config, history=history,
                       validation=validation, best_step=best_step, steps_run=len(history),
                       stopped_early=stopped_early, seconds=time.perf_counter() - started, prompt_hashes=hashes,
                       factors=factors)
