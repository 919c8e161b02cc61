"""``SearchResult``: what a search reports, and its one writer (``search_results.json``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shears.adapters.search_space import SearchSpace
from shears.artifacts import SEARCH_RESULTS, SearchBest, config_record
from shears.search.config import SearchConfig
from shears.search.evaluator import CachedEvaluator, Evaluation
from shears.search.hill_climb import SearchOutcome
from shears.utils import atomic_write_json


@dataclass
class SpaceSummary:
    """The size of the searched space: groups, r_max and the adapter sizes at its two ends."""

    groups: int
    r_max: int
    max_adapter_parameters: int
    min_adapter_parameters: int

    @classmethod
    def of(cls, space: SearchSpace) -> SpaceSummary:
        return cls(
            len(space.groups),
            space.r_max,
            space.adapter_parameters(space.maximal()),
            space.adapter_parameters(space.minimal()),
        )


@dataclass
class ComputeInfo:
    """What the loss objective ran: decoder blocks, as whole forwards, objective calls."""

    decoder_blocks_run: int
    full_forward_equivalents: float
    objective_calls: int

    @classmethod
    def of(cls, objective: Any) -> ComputeInfo | None:
        """``None`` for an objective that does not count its blocks."""
        if not hasattr(objective, "blocks_run"):
            return None
        n = max(1, getattr(objective, "n_blocks", 1))
        blocks = objective.blocks_run
        return cls(blocks, round(blocks / n, 2), objective.calls)


@dataclass
class SearchSetup:
    """Where a search ran: its model and adapter (as given and made absolute), its data."""

    model: str
    adapter: str
    data: dict[str, Any]
    resolved: dict[str, str]
    validation_examples: int


# Left out of the file when unset: they exist only for some searches (two objectives, CUDA,
# an objective that counts its blocks).
_OPTIONAL = ("pareto_front", "peak_cuda_mib", "compute")


@dataclass
class SearchResult:
    """Every field of ``search_results.json``, in its order.

    ``best``: the best evaluation (``None`` when nothing was evaluated; its score ``None`` when it
    was not scored); ``history``: every evaluation in order; ``settings``: the SearchConfig;
    ``max_params``: the adapter-size budget every evaluated config is within (0 = no limit);
    ``precision``: the setting, ``autocast``: what it meant on this device (``bf16-autocast`` or
    ``off``).
    """

    algorithm: str
    objective: str
    maximize: bool
    budget: int | None
    max_params: int
    evaluations: int
    objective_calls: int
    resumed_evaluations: int
    stop_reason: str
    time_s: float
    best: SearchBest | None
    space: SpaceSummary
    trajectory: list[dict[str, Any]]
    pareto_front: list[int] | None
    history: list[Evaluation]
    model: str
    adapter: str
    data: dict[str, Any]
    resolved: dict[str, str]
    validation_examples: int
    peak_rss_mib: float
    peak_cuda_mib: float | None
    compute: ComputeInfo | None
    precision: str
    autocast: str
    settings: dict[str, Any]

    @classmethod
    def build(
        cls,
        cfg: SearchConfig,
        evaluator: CachedEvaluator,
        outcome: SearchOutcome,
        elapsed: float,
        setup: SearchSetup,
        peak_memory: dict[str, float],
        autocast: str = "off",
    ) -> SearchResult:
        """The result of a finished search (pure; no I/O); ``autocast``: the label of
        :func:`shears.precision.describe` the candidates ran under."""
        best = outcome.best
        return cls(
            algorithm=cfg.algorithm,
            objective=evaluator.objective.name,
            maximize=evaluator.maximize,
            budget=evaluator.budget,
            max_params=evaluator.max_params or 0,
            evaluations=evaluator.n_evaluations,
            objective_calls=evaluator.objective_calls,
            resumed_evaluations=sum(e.resumed for e in evaluator.history),
            stop_reason=outcome.stop_reason,
            time_s=round(elapsed, 2),
            best=None
            if best is None
            else SearchBest(
                best.config,
                None if math.isnan(best.score) else best.score,
                best.adapter_parameters,
                best.index,
            ),
            space=SpaceSummary.of(evaluator.space),
            trajectory=outcome.trajectory,
            pareto_front=outcome.extra.get("pareto_front"),
            history=list(evaluator.history),
            **asdict(setup),
            peak_rss_mib=peak_memory["peak_rss_mib"],
            peak_cuda_mib=peak_memory.get("peak_cuda_mib"),
            compute=ComputeInfo.of(evaluator.objective),
            precision=cfg.precision,
            autocast=autocast,
            settings=config_record(cfg),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``search_results.json``."""
        out = asdict(self)
        return {k: v for k, v in out.items() if k not in _OPTIONAL or v is not None}

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/search_results.json`` (atomically); return its path."""
        path = Path(folder) / SEARCH_RESULTS
        atomic_write_json(path, self.to_dict())
        return path
