"""The run-folder contract: the name of every file that one stage writes and another reads, and
typed readers (and writers) for them. No stage opens another stage's files except through here.

A ``shears run`` folder (each stage folder is also what the stage's own command writes)::

    run_config.json  stages.json  stage_times.json  report.json  report.md  accuracy.png
    prune/           prune_report.json  prune_config.json  sparsity_per_layer.png  (the model)
    train/           train_config.json  train_results.json  loss.png  (the super-adapter)
    search/          search_results.json  search_log.jsonl  search_progress.png  search_ranks.png
    eval/<variant>/  eval_results.json  predictions.jsonl
    export/          export_results.json  export_config.json  (the PEFT adapter)
    deploy/          deploy_results.json  deploy_config.json  (the OpenVINO IR; with `deploy:`)

``shears generate --output-dir`` (no stage of a run) writes ``completions.jsonl``,
``generate_results.json`` and ``generate_config.json``.

The files of an adapter folder belong to :mod:`shears.adapters`. Every reader goes through
:func:`shears.inputs.read_json_file`: a damaged file is a one-line error naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from shears.config import absolute_spec, recorded_path, to_dict
from shears.errors import ShearsError
from shears.inputs import read_json_file

# ---------------------------------------------------------------------------- file names

PRUNE_REPORT = "prune_report.json"
PRUNE_CONFIG = "prune_config.json"
PRUNE_PLOT = "sparsity_per_layer.png"
TRAIN_CONFIG = "train_config.json"
TRAIN_RESULTS = "train_results.json"
TRAIN_PLOT = "loss.png"
SEARCH_RESULTS = "search_results.json"
SEARCH_LOG = "search_log.jsonl"
SEARCH_PLOT = "search_progress.png"
SEARCH_RANKS_PLOT = "search_ranks.png"
EVAL_RESULTS = "eval_results.json"
EVAL_PREDICTIONS = "predictions.jsonl"
EXPORT_RESULTS = "export_results.json"
EXPORT_CONFIG = "export_config.json"
DEPLOY_RESULTS = "deploy_results.json"
DEPLOY_CONFIG = "deploy_config.json"
GENERATE_RESULTS = "generate_results.json"
GENERATE_CONFIG = "generate_config.json"
GENERATE_COMPLETIONS = "completions.jsonl"
RUN_CONFIG = "run_config.json"
RUN_LEDGER = "stages.json"
RUN_TIMES = "stage_times.json"
RUN_REPORT = "report.json"
RUN_REPORT_MD = "report.md"
RUN_PLOT = "accuracy.png"

# The file each stage writes last: its presence marks the stage's output complete.
RESULTS = {
    "prune": PRUNE_REPORT,
    "train": TRAIN_RESULTS,
    "search": SEARCH_RESULTS,
    "eval": EVAL_RESULTS,
    "export": EXPORT_RESULTS,
    "deploy": DEPLOY_RESULTS,
    "generate": GENERATE_RESULTS,
}

# The files that identify each command's output (for folders written before output markers).
STAGE_FILES = {
    "prune": (PRUNE_REPORT, PRUNE_CONFIG),
    "train": (TRAIN_CONFIG, TRAIN_RESULTS),
    "search": (SEARCH_RESULTS, SEARCH_LOG),
    "eval": (EVAL_RESULTS,),
    "export": (EXPORT_RESULTS, EXPORT_CONFIG),
    "deploy": (DEPLOY_RESULTS, DEPLOY_CONFIG),
    "generate": (GENERATE_RESULTS, GENERATE_CONFIG),
    "run": (RUN_CONFIG,),
}


def complete(folder: str | os.PathLike, stage: str) -> bool:
    """Whether ``folder`` holds the complete output of ``stage`` (its results file)."""
    return (Path(folder) / RESULTS[stage]).is_file()


def _read(path: Path, what: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when the file is absent."""
    return read_json_file(path, what, expect=dict) if path.is_file() else None


def _typed(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """``raw[key]`` (``None`` when absent or null), checked against ``kind``."""
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ShearsError(f"{where}: {key} must be {_KINDS[kind]}, got {value!r}")
    return value


_KINDS = {str: "text", int: "an integer", dict: "an object {...}"}


# ---------------------------------------------------------------------------- train_config.json

RESOLVED = "resolved"  # the local path settings made absolute (works from any current folder)
RESOLVED_KEYS = ("model", "data", "output_dir")
# settings of any stage that may name a local input or output path
PATH_KEYS = (
    "model",
    "data",
    "adapter",
    "sub_adapter",
    "calibration",
    "ppl_source",
    "eval_results",
    "space",
    "start",
    "output_dir",
    "teacher",
    "teacher_adapter",
    "prompts_file",
)


def config_record(cfg: Any) -> dict[str, Any]:
    """A stage config as saved next to its output: the settings as given, plus :data:`RESOLVED`,
    its path settings made absolute (hub ids, named models and choices stay as given)."""
    resolved = {
        k: absolute_spec(v, local=k == "output_dir")
        for k in PATH_KEYS
        if isinstance(v := getattr(cfg, k, None), str) and v
    }
    return {**to_dict(cfg), RESOLVED: resolved}


def train_config_record(cfg: Any) -> dict[str, Any]:
    """What ``train_config.json`` holds: a TrainConfig as given, plus :data:`RESOLVED` paths."""
    return config_record(cfg)


def write_train_config(folder: Path, cfg: Any) -> None:
    """Write ``folder/train_config.json`` for the TrainConfig ``cfg`` (atomically)."""
    from shears.utils import atomic_write_json

    atomic_write_json(folder / TRAIN_CONFIG, train_config_record(cfg))


def read_train_config(folder: Path) -> dict[str, Any] | None:
    """The ``train_config.json`` of a training output folder as written; ``None`` if absent."""
    return _read(Path(folder) / TRAIN_CONFIG, "training config")


@dataclass(frozen=True)
class TrainSettings:
    """What search and eval take from a training run's ``train_config.json`` (the defaults mean
    nothing recorded). ``resolved``: the absolute forms of the local paths among them."""

    model: str | None = None
    data: str | None = None
    data_config: str | None = None
    data_fields: dict[str, str] = field(default_factory=dict)
    data_seed: int = 0
    train_size: int = 0
    prompt_style: str | None = None
    cutoff_len: int | None = None
    resolved: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = TRAIN_CONFIG) -> TrainSettings:
        """Check and convert a ``train_config.json`` object. A setting missing at the top level
        is looked up one level down (an early layout grouped settings in sections)."""
        flat = {k: v for k, v in raw.items() if not isinstance(v, dict) or k in _DICT_KEYS}
        for section in (v for k, v in raw.items() if isinstance(v, dict) and k not in _DICT_KEYS):
            for k, v in section.items():
                flat.setdefault(k, v)
        text = {k: _typed(flat, k, str, where) for k in _TEXT_KEYS}
        ints = {k: _typed(flat, k, int, where) for k in ("data_seed", "train_size", "cutoff_len")}
        dicts = {k: _typed(flat, k, dict, where) or {} for k in _DICT_KEYS}
        return cls(
            **text,
            data_seed=ints["data_seed"] or 0,
            train_size=ints["train_size"] or 0,
            cutoff_len=ints["cutoff_len"] or None,
            **dicts,
        )

    def path(self, key: str) -> str | None:
        """A path setting (``model`` or ``data``) usable from any current folder: its recorded
        absolute form when that exists, else as given."""
        return recorded_path(getattr(self, key), self.resolved.get(key))


_TEXT_KEYS = ("model", "data", "data_config", "prompt_style")
_DICT_KEYS = ("data_fields", "resolved")


def read_train_settings(adapter_dir: str | os.PathLike | None) -> TrainSettings:
    """The settings of the ``train_config.json`` in (or next to) a super-adapter folder; empty
    settings when there is none."""
    if not adapter_dir:
        return TrainSettings()
    d = Path(adapter_dir)
    for cand in (d / TRAIN_CONFIG, d.parent / TRAIN_CONFIG):
        if cand.is_file():
            raw = read_json_file(cand, "training config", expect=dict)
            return TrainSettings.from_dict(raw, f"training config {str(cand)!r}")
    return TrainSettings()


# ---------------------------------------------------------------------------- stage results


@dataclass(frozen=True)
class PruneSummary:
    """What the run report takes from ``prune_report.json``."""

    stage: ClassVar[str] = "prune"
    what: ClassVar[str] = "pruning report"
    target_sparsity: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PruneSummary:
        targets = raw.get("targets")
        found = targets.get("sparsity") if isinstance(targets, dict) else raw.get("sparsity")
        return cls(found)


@dataclass(frozen=True)
class TrainSummary:
    """What the run report and the study take from ``train_results.json``."""

    stage: ClassVar[str] = "train"
    what: ClassVar[str] = "training results"
    global_steps: int | None = None
    first_loss: float | None = None
    final_loss: float | None = None
    train_loss: float | None = None
    train_runtime_s: float | None = None
    adapter_parameters: dict[str, int] | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainSummary:
        return cls(**{f.name: raw.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class SearchBest:
    """The best sub-adapter of ``search_results.json``: ``{group: rank}``, score, size, and its
    place in the search's history."""

    config: dict[str, int]
    score: float | None = None
    adapter_parameters: int | None = None
    index: int | None = None

    @classmethod
    def from_dict(cls, raw: Any, where: str = SEARCH_RESULTS) -> SearchBest | None:
        """``None`` for ``best: null`` (a search that evaluated nothing)."""
        if raw is None:
            return None
        if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
            raise ShearsError(f"{where} has no best.config")
        return cls(raw["config"], raw.get("score"), raw.get("adapter_parameters"), raw.get("index"))


@dataclass(frozen=True)
class SearchSummary:
    """What the run report and the study take from ``search_results.json``. ``best``: the record
    as written (:func:`read_search_best` reads it typed); ``first_score``: the first evaluation's."""

    stage: ClassVar[str] = "search"
    what: ClassVar[str] = "search results"
    algorithm: str | None = None
    objective: str | None = None
    evaluations: int | None = None
    stop_reason: str | None = None
    best: dict[str, Any] | None = None
    time_s: float | None = None
    first_score: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SearchSummary:
        history = raw.get("history") or [{}]
        keys = ("algorithm", "objective", "evaluations", "stop_reason", "best", "time_s")
        return cls(**{k: raw.get(k) for k in keys}, first_score=history[0].get("score"))


@dataclass(frozen=True)
class EvalSummary:
    """What the run report and the study take from ``eval_results.json``."""

    stage: ClassVar[str] = "eval"
    what: ClassVar[str] = "evaluation results"
    mean_accuracy: float | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    parameters: int | None = None
    nonzero_parameters: int | None = None
    sparsity: float | None = None
    sub_adapter: str | None = None  # its name (heuristic, max, a file)
    sub_adapter_config: dict[str, int] | None = None
    adapter_parameters: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvalSummary:
        params, sub = raw.get("parameters") or {}, raw.get("sub_adapter") or {}
        return cls(
            mean_accuracy=raw.get("mean_accuracy"),
            tasks=raw.get("tasks") or {},
            parameters=params.get("parameters"),
            nonzero_parameters=params.get("nonzero_parameters"),
            sparsity=params.get("sparsity"),
            sub_adapter=sub.get("name"),
            sub_adapter_config=sub.get("config"),
            adapter_parameters=sub.get("adapter_parameters", 0),
        )


@dataclass(frozen=True)
class ExportSummary:
    """What the run report takes from ``export_results.json``."""

    stage: ClassVar[str] = "export"
    what: ClassVar[str] = "export results"
    output_dir: str | None = None
    parameters: dict[str, Any] | None = None
    merge: str | None = None  # the merge's one-line summary

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExportSummary:
        merge = (raw.get("merge") or {}).get("summary")
        return cls(raw.get("output_dir"), raw.get("parameters"), merge)


@dataclass(frozen=True)
class DeploySummary:
    """What the run report takes from ``deploy_results.json``: precision, sizes, sparsity kept
    in the IR, the sparse kernel's use and the verification against PyTorch."""

    stage: ClassVar[str] = "deploy"
    what: ClassVar[str] = "deploy results"
    output_dir: str | None = None
    precision: str | None = None
    merge: str | None = None  # how the sub-adapter ships: masked | separate (None: no adapter)
    bytes: dict[str, int] | None = None  # ir_bin, ir_xml
    base_linear_sparsity: float | None = None
    ir_sparsity: float | None = None  # zeros of the IR's matmul weights
    matmul_layers: int | None = None
    sparse_kernel_layers: int | None = None
    sparse_rate: float | None = None
    runtime_properties: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None  # greedy-token agreement, logit difference
    time_s: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeploySummary:
        def sub(key: str) -> dict[str, Any]:
            value = raw.get(key)
            return value if isinstance(value, dict) else {}

        kernel, verify = sub("sparse_kernel"), sub("verification")
        keep = (
            "tokens",
            "greedy_tokens_match",
            "first_mismatch",
            "max_abs_logit_diff",
            "rel_logit_diff",
        )
        return cls(
            output_dir=raw.get("output_dir"),
            precision=raw.get("precision"),
            merge=sub("adapter").get("merge"),
            bytes=raw.get("bytes"),
            base_linear_sparsity=raw.get("base_linear_sparsity"),
            ir_sparsity=sub("ir_sparsity").get("sparsity"),
            matmul_layers=kernel.get("matmul_layers"),
            sparse_kernel_layers=kernel.get("sparse_kernel_layers"),
            sparse_rate=raw.get("sparse_rate"),
            runtime_properties=raw.get("runtime_properties"),
            verification={k: verify[k] for k in keep if k in verify} or None,
            time_s=raw.get("time_s"),
        )


Summary = TypeVar(
    "Summary",
    PruneSummary,
    TrainSummary,
    SearchSummary,
    EvalSummary,
    ExportSummary,
    DeploySummary,
)


def read_summary(folder: str | os.PathLike, kind: type[Summary]) -> Summary | None:
    """``kind`` (``PruneSummary`` ... ``DeploySummary``) of its stage's results file in
    ``folder``; ``None`` when the stage has not finished there."""
    raw = _read(Path(folder) / RESULTS[kind.stage], kind.what)
    return None if raw is None else kind.from_dict(raw)


def read_search_best(path: str | os.PathLike) -> SearchBest | None:
    """The best sub-adapter of a ``search_results.json`` (or of a search output folder holding
    one); ``None`` when the search evaluated nothing."""
    p = Path(path)
    p = p / SEARCH_RESULTS if p.is_dir() else p
    raw = read_json_file(p, "search results", expect=dict)
    return SearchBest.from_dict(raw.get("best"), f"search results {str(p)!r}")


def find_eval_results(adapter: str | os.PathLike, sub_adapter: str | None) -> Path | None:
    """The ``eval_results.json`` beside an adapter: in its folder, else in the sub-adapter's
    folder (a search output folder, or the folder of a ``search_results.json``)."""
    candidates = [Path(adapter) / EVAL_RESULTS]
    sub = Path(sub_adapter or "")
    if sub_adapter and sub.is_dir():
        candidates.append(sub / EVAL_RESULTS)
    elif sub.suffix == ".json" and sub.is_file():
        candidates.append(sub.parent / EVAL_RESULTS)
    return next((c for c in candidates if c.is_file()), None)


def read_eval_results(path: str | os.PathLike) -> Any:
    """The whole ``eval_results.json`` at ``path`` (for a report of every number in it)."""
    return read_json_file(path, "evaluation results")
