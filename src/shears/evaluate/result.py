"""``EvalResult``: what ``eval_results.json`` holds, typed (:meth:`EvalResult.to_dict` is the
file's content, its keys in file order; :mod:`shears.artifacts` reads it back as an
``EvalSummary``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from shears.adapters.search_space import Config


@dataclass(frozen=True)
class SubAdapterUsed:
    """The active sub-adapter of a super-adapter: its name (heuristic, max, a file), config and
    adapter parameters."""

    name: str
    config: Config
    adapter_parameters: int


@dataclass
class EvalResult:
    """What ``eval_results.json`` holds (:meth:`to_dict`: its keys, in file order).

    ``tasks``: ``{name: metrics}``; ``parameters``: :func:`shears.sparsity.count_nonzero_parameters`
    of the evaluated model; ``settings``: the EvalConfig as given; ``precision``: the setting,
    ``autocast``: what it meant on this device (``bf16-autocast`` or ``off``); ``world_size``:
    the data-parallel processes that shared the work.
    """

    model: str
    adapter: str | None
    adapter_kind: str | None  # super | peft | None
    sub_adapter: SubAdapterUsed | None
    tasks: dict[str, dict[str, Any]]
    mean_accuracy: float | None
    num_tasks_in_mean: int
    prompt_style: str
    time_s: float
    precision: str
    autocast: str
    parameters: dict[str, Any]
    settings: dict[str, Any]
    device: str
    dtype: str
    total_time_s: float
    memory: dict[str, float]
    versions: dict[str, str]
    world_size: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
