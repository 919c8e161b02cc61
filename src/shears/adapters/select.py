"""Which sub-adapter: one resolver for ``search --start``, ``eval --sub-adapter`` and
``export --sub-adapter``.

Accepted ``spec`` values:
- a named config: ``heuristic`` | ``max`` | ``min`` (also ``maximal`` / ``minimal``);
- a ``search_results.json`` (its ``best.config``), or a folder holding one;
- a JSON file holding ``{group: rank}``, ``{"config": {group: rank}}``, ``{"sub_adapter": ...}``
  or ``{module_name: rank}`` (every module of a group must then get the same rank);
- an inline JSON mapping, e.g. ``'{"0.q_proj+k_proj+v_proj": 16, ...}'``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shears.adapters.search_space import NAMED_CONFIGS, Config, SearchSpace
from shears.artifacts import SEARCH_RESULTS, SearchBest
from shears.errors import ShearsError
from shears.inputs import read_json_file


@dataclass(frozen=True)
class Wording:
    """How a command's errors name the spec (users and tests know these phrases)."""

    flag: str  # the option, first word of most errors
    file: str  # what a file that cannot be read is called
    choices: str  # what the spec may be, after "is neither"


SHORT = "heuristic/max/min nor an existing JSON file"
SEARCH_START = Wording("--start", "--start file", SHORT)
EVAL_SUB_ADAPTER = Wording("--sub-adapter", "sub-adapter config", SHORT)
EXPORT_SUB_ADAPTER = Wording(
    "--sub-adapter",
    "sub-adapter file",
    "heuristic, max, min, a search_results.json, a widths JSON file nor an inline JSON mapping",
)


@dataclass
class SubAdapterChoice:
    """A validated ``{group: rank}`` config and where it came from.

    ``label``: the spec as named (``maximal``, a file path, ``inline``); ``source``: heuristic |
    max | min | search | file | inline; ``details``: the file, and a search's algorithm and score.
    """

    label: str
    config: Config
    source: str
    details: dict[str, Any] = field(default_factory=dict)


def resolve_sub_adapter(
    spec: str, space: SearchSpace, wording: Wording = EXPORT_SUB_ADAPTER
) -> SubAdapterChoice:
    """Turn ``spec`` into a validated config of ``space`` (a one-line ShearsError otherwise)."""
    s = spec.strip()
    if s in NAMED_CONFIGS:
        return SubAdapterChoice(s, space.named_config(s), NAMED_CONFIGS[s])
    if s.startswith("{"):
        try:
            data = json.loads(s)
        except json.JSONDecodeError as exc:
            raise ShearsError(f"{wording.flag} inline JSON is not valid: {exc}") from exc
        config = _from_mapping(data, space, f"{wording.flag} inline config")
        return SubAdapterChoice("inline", config, "inline")
    path = Path(s)
    if path.is_dir():
        if not (path / SEARCH_RESULTS).is_file():
            raise ShearsError(f"{wording.flag} folder {s!r} holds no {SEARCH_RESULTS}")
        return _from_file(path / SEARCH_RESULTS, str(path), space, wording)
    if not path.is_file():
        raise ShearsError(f"{wording.flag} {s!r} is neither {wording.choices}")
    return _from_file(path, str(path), space, wording)


def _from_file(path: Path, label: str, space: SearchSpace, wording: Wording) -> SubAdapterChoice:
    """A search result's best config, or a widths file (bare, or under ``sub_adapter`` /
    ``config``: the results of eval and export)."""
    data = read_json_file(path, wording.file)
    where = f"{wording.flag} {str(path)!r}"
    if isinstance(data, dict) and ("best" in data or "best_config" in data):
        best = _search_best(data, where)
        config = _from_mapping(best, space, f"{where} best.config")
        return SubAdapterChoice(label, config, "search", _search_details(data, path))
    for key in ("sub_adapter", "config"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    return SubAdapterChoice(label, _from_mapping(data, space, where), "file", {"file": str(path)})


def _search_best(data: dict[str, Any], where: str) -> Config:
    """``best.config`` of a parsed ``search_results.json`` (or the older ``best_config``)."""
    raw = data.get("best")
    if not isinstance(raw, dict) and "best_config" in data:
        raw = {"config": data["best_config"]}
    best = SearchBest.from_dict(raw, where)
    if best is None:
        raise ShearsError(
            f"{where}: the search result holds no best config (did the search evaluate any?)"
        )
    return best.config


def _search_details(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the export card tells of a search: file, algorithm, budget, time, best score, size."""
    details: dict[str, Any] = {"file": str(path)}
    for key in ("algorithm", "objective", "budget", "time_s"):
        if isinstance(data.get(key), (str, int, float)):
            details[key] = data[key]
    best = data.get("best") if isinstance(data.get("best"), dict) else {}
    for key, value in best.items():
        if key != "config" and isinstance(value, (str, int, float, bool)):
            details[f"best_{key}"] = value
    evaluated = data.get("evaluated") or data.get("history") or data.get("evaluations")
    if isinstance(evaluated, list):
        details["evaluations"] = len(evaluated)
    return details


def _from_mapping(data: Any, space: SearchSpace, where: str) -> Config:
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
