"""``PruneResult``: what a pruning run reports, and its one writer (``prune_report.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shears.artifacts import PRUNE_REPORT
from shears.utils import atomic_write_json


@dataclass
class CalibrationInfo:
    """The calibration windows a pruning run read (none for magnitude pruning)."""

    source: str  # the --calibration setting, or "in-memory" for ids / texts given directly
    nsamples: int
    seqlen: int
    tokens: int
    seed: int
    batch_size: int


@dataclass
class PerplexityInfo:
    """Held-out perplexity before and after pruning (``--eval-ppl``)."""

    source: str
    tokens: int
    seqlen: int
    dense: float
    pruned: float | None = None


@dataclass
class PruneResult:
    """Every field of ``prune_report.json``, in its order.

    ``targets``: zeros / numel / sparsity over all pruned weights; ``layers``: the same per layer
    (plus its ``block``), in model order; ``model_parameters``: parameters and non-zero parameters
    of the whole model; ``seconds``: the time of each step; ``perplexity``: with ``--eval-ppl``;
    ``profile``: with ``--sparsity-profile owl``, per decoder block its ``block`` index,
    ``outlier_ratio``, target ``sparsity`` and target ``parameters``; ``precision``: the
    ``--precision`` asked for, ``autocast``: what the calibration forward passes ran under
    (``bf16-autocast`` or ``off``; perplexity always runs in full precision); ``device_memory``:
    ``--offload`` and the weights held on the compute device at once
    (:meth:`shears.prune.stream.BlockStream.record`).
    """

    model: str
    output_dir: str
    method: str
    pattern: str
    sparsity: float
    calibration: CalibrationInfo | None
    targets: dict[str, Any]
    layers: dict[str, dict[str, Any]]
    model_parameters: dict[str, int]
    seconds: dict[str, float]
    peak_memory: dict[str, float]
    perplexity: PerplexityInfo | None = None
    sparsity_profile: str = "uniform"
    profile: list[dict[str, Any]] | None = None
    precision: str = "auto"
    autocast: str = "off"
    device_memory: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``prune_report.json``."""
        return asdict(self)

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/prune_report.json`` (atomically); return its path."""
        path = Path(folder) / PRUNE_REPORT
        atomic_write_json(path, self.to_dict())
        return path
