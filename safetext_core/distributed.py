"""One alignment run as several processes (``accelerate launch`` / ``torchrun``): data parallel through Accelerate.

``safetext align`` started by ``accelerate launch --num_processes N -m safetext_core align ...`` (or ``torchrun``)
runs the same loop in N processes. :class:`Processes` is the loop's only view of that; a single process (no
launcher, or a launcher with one process) gets the base class, whose every method is the identity, so such a run
is the one it always was, bit for bit, and never imports Accelerate.

What each process does (docs/encoders.md, "Several processes"):

* **Sharded**: each step's batch (unsafe prompts, safe prompts, pair sides, word salads, as ``_step_batches``
  draws them identically everywhere from the seed) is split by :meth:`Processes.shard`; each process encodes and
  back-propagates its share. Every loss term is a per-prompt sum divided by the *whole* batch's size, so the sum
  of the processes' gradients is the gradient of the whole batch.
* **Summed by Accelerate**: once per step, after every local backward pass, the gradients and the logged loss
  parts (``accelerate.utils.reduce``, sum). The loop back-propagates a step in several passes (safe half, unsafe
  half, length groups, one encoder after another) whose number differs between processes; DDP's reducer
  all-reduces inside each backward pass and needs every process to run the same passes, so the passes stay
  local and the sum is taken once, which is the same average DDP takes. The trained weights are the main
  process's at the start (broadcast once, as DDP does); clipping and AdamW then see identical gradients
  everywhere, so they stay identical.
* **Decided on the main process**: mining and validation run there only, and their results (the most-moved
  prompts, the figures that pick the best step and stop early) are broadcast (``broadcast_object_list``), as is
  a cancel request (any process's Ctrl-C stops all of them at the same step).
* **Written by the main process**: the SafeText file, resume checkpoints, report and figures, through the same
  atomic writes as a single process; logs and progress bars too.

Sharded parameters (Accelerate's FSDP, DeepSpeed) are refused with a message: under them every forward pass
becomes a collective operation, while this loop encodes originals, mines and validates with per-process passes.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

import torch

from .errors import ConfigError

T = TypeVar("T")
_SHARDED = ("Accelerate is configured for {}, which shards the encoder's weights; SafeText's loop runs data parallel "
            "only (every process holds the whole encoder, docs/encoders.md \"Several processes\"): launch with "
            "--multi_gpu, without FSDP or DeepSpeed")


class Processes:
    """One process: the whole batch, no communication. :meth:`from_environment` picks the launcher's processes."""

    rank = 0
    world = 1
    device: torch.device | None = None  # None: the caller's device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This process's share of a step's batch: every ``world``-th index from its rank on."""
        return list(indices)[self.rank::self.world]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the processes (one process: ``values`` itself)."""
        return values

    def start_from_main(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Give every process the main process's values of ``params`` (as DDP does when it wraps a model)."""

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace every parameter's gradient by its sum over the processes."""

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run on the main process only, its result given to every process."""
        return compute()

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is True on any of them."""
        return flag

    def barrier(self) -> None:
        """Wait until every process has reached this point."""

    @staticmethod
    def from_environment(cpu: bool = False) -> "Processes":
        """The processes a launcher started (``WORLD_SIZE`` > 1), else one process. ``cpu``: run them on the CPU
        (gloo) even where an accelerator is present; without one they always do."""
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return AccelerateProcesses(cpu)
        return Processes()


class AccelerateProcesses(Processes):
    """The processes of ``accelerate launch`` / ``torchrun``, through :class:`accelerate.Accelerator`."""

    def __init__(self, cpu: bool = False) -> None:
        try:
            from accelerate import Accelerator
            from accelerate.utils import DistributedType, parse_flag_from_env
        except ImportError as error:
            raise ConfigError("several processes need Hugging Face Accelerate: pip install accelerate "
                              "(the multi extra)") from error
        # What `accelerate launch --use_fsdp / --use_deepspeed` (or its config file) asks for, refused before
        # Accelerate builds it (on a CPU its FSDP set-up fails with an error of its own).
        for variable, kind in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
            if parse_flag_from_env(variable):
                raise ConfigError(_SHARDED.format(kind))
        # Accelerate takes a launch on a machine without GPU for one process unless told to use the CPU.
        self.accelerator = Accelerator(cpu=cpu or not _accelerator_available())
        kind = self.accelerator.distributed_type
        if kind in (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
            raise ConfigError(_SHARDED.format(kind.value))
        if self.accelerator.mixed_precision != "no":
            raise ConfigError(f"Accelerate is configured for {self.accelerator.mixed_precision} mixed precision; "
                              "the alignment loop trains in float32: launch with --mixed_precision no")
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.device = self.accelerator.device

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        from accelerate.utils import reduce

        return reduce(values, reduction="sum")

    def start_from_main(self, params: Sequence[torch.nn.Parameter]) -> None:
        from accelerate.utils import broadcast

        with torch.no_grad():
            for param in params:
                broadcast(param.data)  # in place

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        from accelerate.utils import reduce

        # Whether a parameter got a gradient can differ between processes (a process whose share of a half was
        # empty); it keeps None, as AdamW expects, only where no process has one.
        present = reduce(torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                                      device=self.device), reduction="sum").tolist()
        for param, anywhere in zip(params, present):
            if anywhere:  # one parameter at a time: at most one gradient's copy at once
                grad = param.grad if param.grad is not None else torch.zeros_like(param)
                param.grad = reduce(grad, reduction="sum")

    def from_main(self, compute: Callable[[], T]) -> T:
        from accelerate.utils import broadcast_object_list

        box: list[Any] = [compute() if self.is_main else None]
        return broadcast_object_list(box)[0]

    def any(self, flag: bool) -> bool:
        return bool(self.sum(torch.tensor([float(flag)], device=self.device)).item() > 0)

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()


def _accelerator_available() -> bool:
    if hasattr(torch, "accelerator"):  # torch >= 2.6: CUDA, XPU, MPS, ...
        return bool(torch.accelerator.is_available())
    return torch.cuda.is_available()


__all__ = ["AccelerateProcesses", "Processes"]
