"""Resolve which sub-adapter to export: a search result, a named config, or a widths JSON.

Accepted ``spec`` values:
- ``heuristic`` | ``max`` | ``min`` (also ``maximal`` / ``minimal``);
- a ``search_results.json`` (its ``best.config``), or a folder holding one;
- a JSON file holding ``{group: rank}``, ``{"config": {group: rank}}`` or ``{module_name: rank}``
  (every module of a group must then get the same rank);
- an inline JSON mapping, e.g. ``'{"0.q_proj+k_proj+v_proj": 16, ...}'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shears.adapters.search_space import Config, SearchSpace
from shears.errors import ShearsError
from shears.inputs import read_json_file

SEARCH_RESULTS = "search_results.json"
NAMED = ("heuristic", "max", "maximal", "min", "minimal")


@dataclass
class SubAdapterChoice:
    """A validated ``{group: rank}`` config and where it came from (for the card and results)."""

    config: Config
    source: str
    details: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path, what: str) -> Any:
    return read_json_file(path, what)


def _from_mapping(data: dict, space: SearchSpace, where: str) -> Config:
    """``{group: rank}`` or ``{module: rank}`` -> validated ``{group: rank}``."""
    if not isinstance(data, dict) or not data:
        raise ShearsError(f"{where}: expected a non-empty {{group: rank}} mapping")
    for k, v in data.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise ShearsError(f"{where}: rank of {k!r} must be an integer, got {v!r}")
    module_to_group = {m: g.name for g in space.groups for m in g.modules}
    if set(data) <= set(module_to_group) and not set(data) <= set(space.by_name):
        config: dict[str, int] = {}
        for m, r in data.items():
            g = module_to_group[m]
            if config.setdefault(g, r) != r:
                raise ShearsError(
                    f"{where}: modules of group {g!r} get different ranks ({config[g]} and {r} "
                    f"for {m!r}); a group shares one rank"
                )
        data = config
    try:
        return space.validate(data)
    except ShearsError as exc:
        raise ShearsError(f"{where}: {exc}") from exc


def _from_search_results(path: Path, space: SearchSpace) -> SubAdapterChoice:
    data = _read_json(path, "search results")
    best = data.get("best") if isinstance(data, dict) else None
    if not isinstance(best, dict) and isinstance(data, dict) and "best_config" in data:
        best = {"config": data["best_config"]}
    if not isinstance(best, dict) or "config" not in best:
        raise ShearsError(f"search results {str(path)!r} have no best.config")
    config = _from_mapping(best["config"], space, f"best.config of {str(path)!r}")
    details = {"file": str(path)}
    for key in ("algorithm", "objective", "budget", "time_s"):
        if key in data and isinstance(data[key], (str, int, float)):
            details[key] = data[key]
    for key, value in best.items():
        if key != "config" and isinstance(value, (str, int, float, bool)):
            details[f"best_{key}"] = value
    evaluated = data.get("evaluated") or data.get("history") or data.get("evaluations")
    if isinstance(evaluated, list):
        details["evaluations"] = len(evaluated)
    return SubAdapterChoice(config, "search", details)


def resolve_sub_adapter(spec: str, space: SearchSpace) -> SubAdapterChoice:
    """Turn ``spec`` into a validated config of ``space`` (ShearsError on anything else)."""
    spec = spec.strip()
    if spec in NAMED:
        return SubAdapterChoice(space.named_config(spec), spec.removesuffix("imal"))
    if spec.startswith("{"):
        try:
            data = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ShearsError(f"inline sub-adapter config is not valid JSON: {exc}") from exc
        return SubAdapterChoice(_from_mapping(data, space, "inline config"), "inline")
    path = Path(spec)
    if path.is_dir():
        if not (path / SEARCH_RESULTS).is_file():
            raise ShearsError(f"folder {spec!r} holds no {SEARCH_RESULTS}")
        return _from_search_results(path / SEARCH_RESULTS, space)
    if not path.is_file():
        raise ShearsError(
            f"sub-adapter {spec!r} is neither heuristic, max, min, a search_results.json, "
            "a widths JSON file nor an inline JSON mapping"
        )
    data = _read_json(path, "sub-adapter file")
    if isinstance(data, dict) and (isinstance(data.get("best"), dict) or "best_config" in data):
        return _from_search_results(path, space)
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    config = _from_mapping(data, space, f"widths file {spec!r}")
    return SubAdapterChoice(config, "file", {"file": str(path)})
