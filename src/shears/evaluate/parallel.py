"""Data-parallel evaluation: ``accelerate launch --num_processes N -m shears eval`` (or ``torchrun
--nproc_per_node N``) splits the work of every task between the processes.

The unit of work is a whole *batch* as one process would build it: the engines (generation,
log-likelihood scoring, perplexity) form their batches exactly as a single process does (sorted by
length, then cut every ``batch_size``), and process ``r`` of ``N`` runs batches ``r, r + N, ...``.
Sharding examples before batching would change which prompts share a batch, hence the padding of
each row, hence (in the last bits of the floats) its logits and maybe a greedy token; whole batches
keep every row's computation identical to the one-process run. Each process then gathers
``(index, result)`` pairs from all (:meth:`DataParallel.gather`, accelerate's ``gather_object``),
so every process ends with every result in input order, computes the same metrics, and only the
main process logs and writes. Perplexity adds its per-window sums in window order, as one process.

On a machine without GPUs, ``torchrun --nproc_per_node N`` or ``accelerate launch --multi_gpu
--num_processes N`` start the processes (gloo); ``accelerate launch --cpu`` alone starts one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from shears.errors import ShearsError

T = TypeVar("T")


def world_size_from_env() -> int:
    """Processes of the launch (``WORLD_SIZE``, set by ``torchrun`` / ``accelerate launch``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _cpu_launch() -> bool:
    """Whether the launcher asked for CPU processes (``accelerate launch --cpu``)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def merge_indexed(pairs: list[tuple[int, T]], n: int) -> list[T]:
    """The values of ``(index, value)`` pairs in index order; every index in ``range(n)`` must
    occur exactly once (what the shards of one pass give together)."""
    out: list[Any] = [None] * n
    seen = [False] * n
    for i, value in pairs:
        if not 0 <= i < n or seen[i]:
            raise ShearsError(f"data-parallel results are inconsistent: index {i} of {n}")
        out[i], seen[i] = value, True
    if not all(seen):
        raise ShearsError(f"data-parallel results are missing {seen.count(False)} of {n} items")
    return out


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel evaluation (``world == 1``: alone)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls, device: str = "auto") -> DataParallel:
        """The launch this process belongs to; several processes set up accelerate's
        ``PartialState``: the process group, gloo when ``device`` is the CPU (or no GPU is
        there), else nccl."""
        if world_size_from_env() < 2:
            return cls()
        from accelerate import PartialState

        cpu = device.startswith("cpu") or not torch.cuda.is_available() or _cpu_launch()
        state = PartialState(cpu=cpu)
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, batch: int) -> bool:
        """Whether batch number ``batch`` (0-based, in the one-process order) runs here."""
        return batch % self.world == self.rank

    def gather(self, items: list[T]) -> list[T]:
        """The ``items`` of every process, concatenated in rank order, on every process."""
        if self.world == 1:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def wait(self) -> None:
        """Wait until every process gets here (nothing to wait for alone)."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def device(self, device: str) -> str:
        """The device to load on: ``auto`` / ``cuda`` take this process's own device (its GPU,
        or the CPU under ``accelerate launch --cpu``) when several processes share a machine."""
        if self.world > 1 and device in ("auto", "cuda"):
            from accelerate import PartialState

            return str(PartialState().device)
        return device


SINGLE = DataParallel()
