"""``TrainResult``: what a training run reports, and its one writer and reader
(``train_results.json``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shears.artifacts import TRAIN_RESULTS
from shears.inputs import read_json_file
from shears.utils import atomic_write_json


@dataclass(frozen=True)
class TrainResult:
    """What ``train_results.json`` holds, one field per key, in its order. ``peak_cuda_mib`` is
    written only on CUDA, ``distill`` only with ``--distill``. Read back with :meth:`read` (a key missing from an older file is
    ``None``)."""

    global_steps: int
    epochs: float
    final_loss: float | None
    first_loss: float | None
    train_loss: float | None
    train_runtime_s: float
    train_samples_per_second: float | None
    train_steps_per_second: float | None
    examples: int  # encoded examples trained on
    examples_dropped: int
    examples_truncated: int
    tokens: int
    effective_batch_size: int
    world_size: int
    device: str
    precision: str  # bf16 | fp16 | fp32
    resumed_from: str | None  # the checkpoint this run continued
    r_max: int
    groups: int
    adapter_modules: int
    trainable_parameters: int
    adapter_parameters: dict[str, int]  # of the max, heuristic and min sub-adapters
    peak_rss_mib: float
    peak_cuda_mib: float | None = None
    distill: dict[str, Any] | None = None  # --distill: settings, first and final ce / kd / hidden

    def to_dict(self) -> dict[str, Any]:
        """The ``train_results.json`` object."""
        out = dataclasses.asdict(self)
        for key in ("peak_cuda_mib", "distill"):
            if out[key] is None:
                del out[key]
        return out

    def write(self, folder: Path) -> None:
        """Write ``folder/train_results.json`` (atomically): its one writer."""
        atomic_write_json(folder / TRAIN_RESULTS, self.to_dict())

    @classmethod
    def read(cls, folder: Path) -> TrainResult:
        """The results of the finished run in ``folder``."""
        raw = read_json_file(folder / TRAIN_RESULTS, "training results", expect=dict)
        return cls(**{f.name: raw.get(f.name) for f in dataclasses.fields(cls)})
