"""Run prune -> train -> search -> eval -> export -> report under one run folder.

Every stage writes its own sub-folder. A stage whose settings and inputs did not change since it
finished is reused (:mod:`shears.pipeline.ledger`); the first changed stage and the stages after
it that read from it run again, replacing their earlier outputs atomically; a killed run resumes
where it stopped (training and search from their own checkpoints/logs). The resolved config is
saved as ``run_config.json``; the run folder must be new, empty or written by ``shears run``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shears.artifacts import (
    EVAL_RESULTS,
    RUN_CONFIG,
    RUN_LEDGER,
    RUN_TIMES,
    SEARCH_RESULTS,
    TrainSettings,
    complete,
)
from shears.config import from_dict, rename_old_keys, to_dict
from shears.errors import ShearsError
from shears.outputs import check_output, claim
from shears.pipeline.config import RunConfig
from shears.pipeline.ledger import Ledger, stage_digest
from shears.pipeline.report import write_report
from shears.utils import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """Every stage config of a run, built and validated before any work starts."""

    prune: Any
    train: Any
    search: Any
    export: Any
    evals: dict[str, Any]  # variant name -> EvalConfig
    baseline_trains: dict[str, Any]  # variant name -> TrainConfig (fixed-rank LoRA)
    validation: dict[str, Any]  # where the search's validation data comes from


def _with_seed(section: dict, seed: int, key: str = "seed") -> dict:
    return {key: seed, **section}


def _hold_out(cfg: RunConfig, train: dict, val_size: int) -> dict[str, Any]:
    """Where the search validates. A file task without ``validation`` keeps its last
    ``val_size`` records out of training (``train.train_size`` is set so; recorded in the
    report); a gym task and a `datasets` dataset have their own validation split."""
    if cfg.validation:
        return {"source": cfg.validation, "held_out_from_task": False}
    path = Path(cfg.task).expanduser()
    if cfg.task.startswith("gym:") or not path.is_file():
        return {"source": cfg.task, "split": "validation", "held_out_from_task": False}
    from shears.data.sources import load_instructions
    from shears.data.spec import DataSpec

    n = len(load_instructions(DataSpec("json", str(path))))
    size = int(train.get("train_size") or 0)
    if 0 < size <= n - val_size:
        return {"source": cfg.task, "records": [size, size + val_size], "held_out_from_task": True}
    if n <= val_size:
        raise ShearsError(
            f"task {cfg.task!r} holds {n} records, too few to keep search.val_size={val_size} "
            "of them for validation; add `validation: FILE` or lower search.val_size"
        )
    train["train_size"] = n - val_size
    logger.info("validation: the last %d of %d records of %s (not trained on)", val_size, n, path)
    return {"source": cfg.task, "records": [n - val_size, n], "held_out_from_task": True}


def build_plan(cfg: RunConfig) -> Plan:
    """Turn a RunConfig into validated stage configs (errors name the section and key)."""
    from shears.evaluate.runner import EvalConfig
    from shears.export.config import ExportConfig
    from shears.prune.config import PruneConfig
    from shears.search.config import SearchConfig
    from shears.train.config import TrainConfig

    run = Path(cfg.run_dir)
    pruned = str(run / "prune")
    adapter = str(run / "train")
    search_results = str(run / "search" / SEARCH_RESULTS)

    def build(cls, section: str, data: dict) -> Any:
        data = rename_old_keys(cls, data, f"{section}.")  # former names, warned about once
        try:
            return from_dict(cls, data)
        except ShearsError as exc:
            msg = str(exc).replace("config key '", f"config key '{section}.", 1)
            raise ShearsError(msg) from exc

    prune = build(
        PruneConfig,
        "prune",
        {**_with_seed(cfg.prune, cfg.seed), "model": cfg.model, "output_dir": pruned},
    )
    search_data = {**_with_seed(cfg.search, cfg.seed), "adapter": adapter, "model": pruned}
    if cfg.validation:
        search_data["data"] = cfg.validation
    search = build(
        SearchConfig, "search", {**search_data, "output_dir": str(run / "search"), "resume": True}
    )
    train_base = {**_with_seed(cfg.train, cfg.seed), "data": cfg.task, "resume": True}
    validation = _hold_out(cfg, train_base, search.val_size)
    train = build(TrainConfig, "train", {**train_base, "model": pruned, "output_dir": adapter})
    evals: dict[str, Any] = {}
    ev = rename_old_keys(
        EvalConfig, {**_with_seed(cfg.eval, cfg.seed), "tasks": cfg.test_tasks}, "eval."
    )
    style = train.prompt_style

    def add_eval(
        name: str, model: str, adapter_dir: str | None = None, sub: str = "heuristic"
    ) -> None:
        data = {**ev, "model": model, "output_dir": str(run / "eval" / name), "sub_adapter": sub}
        data.setdefault("prompt_style", style)
        if adapter_dir:
            data["adapter"] = adapter_dir
        evals[name] = build(EvalConfig, "eval", data)

    if cfg.evaluate_dense:
        add_eval("dense_base", cfg.model)
    add_eval("pruned_base", pruned)
    add_eval("shears_heuristic", pruned, adapter, "heuristic")
    add_eval("shears_searched", pruned, adapter, search_results)
    baseline_trains: dict[str, Any] = {}
    if cfg.baselines:
        fixed = replace(train.space, widths=[train.adapter.r_max])
        for name, model in (("lora_pruned", pruned), ("lora_dense", cfg.model)):
            out = str(run / "baselines" / name)
            baseline_trains[name] = replace(train, model=model, output_dir=out, space=fixed)
            add_eval(name, model, out, "max")
    export = build(
        ExportConfig,
        "export",
        {
            **cfg.export,
            "adapter": adapter,
            "model": pruned,
            "output_dir": str(run / "export"),
            "sub_adapter": search_results,
            "eval_results": str(run / "eval" / "shears_searched" / EVAL_RESULTS),
        },
    )
    return Plan(prune, train, search, export, evals, baseline_trains, validation)


def _preflight_model(plan: Plan) -> None:
    """Prune targets, training groups and the search's start file against the base model's
    structure (a weightless skeleton), before the first stage."""
    from shears.adapters.search_space import SearchSpace
    from shears.adapters.select import SEARCH_START, resolve_sub_adapter
    from shears.models import find_targets, model_skeleton
    from shears.prune.api import check_pattern_fits

    p = plan.prune
    skeleton = model_skeleton(p.model, p.gguf_file, p.trust_remote_code)
    if skeleton is None:
        return
    check_pattern_fits(find_targets(skeleton, p.targets, p.ignore), p.nm)
    space = SearchSpace.build(skeleton, plan.train.adapter, plan.train.space)
    resolve_sub_adapter(plan.search.start, space, SEARCH_START)


def _preflight_data(plan: Plan) -> None:
    """Load (and so check) the training data (unless training is complete) and the test data
    before any stage runs, so a missing file or field is reported first, not after pruning."""
    from shears.context import check_plan_context
    from shears.evaluate.runner import prepare_tasks
    from shears.search.data import load_validation_examples, resolve_data_settings
    from shears.train.data import load_train_examples

    check_plan_context(plan)  # sequence lengths against the base model's positions
    if not load_train_examples(plan.train):
        raise ShearsError(f"task {plan.train.data!r} holds no training examples")
    need = {"loss": ("output",), "math": ("answer",), "choice": ("choices",)}
    settings = resolve_data_settings(plan.search, TrainSettings.from_dict(to_dict(plan.train)))
    load_validation_examples(settings, need[plan.search.objective])
    first = next(iter(plan.evals.values()))
    prepare_tasks(first.task_specs(), first)


RUN_OWNED = (
    "prune",
    "train",
    "search",
    "eval",
    "export",
    "baselines",
    RUN_CONFIG,
    RUN_TIMES,
    RUN_LEDGER,
    "report.*",
    "*.png",
)


def run_inputs(cfg: RunConfig) -> list[str | None]:
    """What a run reads: the run folder must not overlap any of it."""
    from shears.evaluate.tasks import parse_task

    return [cfg.model, cfg.task, cfg.validation, *(parse_task(t).path for t in cfg.test_tasks)]


def _check_run_dir(cfg: RunConfig) -> Path:
    """The run folder, absolute; refused when it is not a Shears run folder (or not empty)."""
    return check_output(cfg.run_dir, "run", resume=True, inputs=run_inputs(cfg), flag="run_dir")


def _adopt_legacy(run: Path, cfg: RunConfig, ledger: Ledger, stages: list[Stage]) -> None:
    """A run folder of a version without ``stages.json``: its complete stages count as done when
    its saved config equals this one."""
    saved = run / RUN_CONFIG
    if ledger.stages or not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    if old == json.loads(json.dumps(to_dict(cfg))):
        for st in stages:
            if st.complete():
                ledger.mark(st.name, st.digest, True)


class _Timer:
    """Stage wall times, persisted so that a resumed run reports the times of earlier stages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, done: bool, fn) -> None:
        if done:
            logger.info("stage %s: up to date, reused", name)
            return
        logger.info("stage %s: starting", name)
        t0 = time.perf_counter()
        fn()
        self.times[name] = round(time.perf_counter() - t0, 2)
        atomic_write_json(self.path, self.times)
        logger.info("stage %s: done in %.1f s", name, self.times[name])


@dataclass
class Stage:
    """One step of a run: its name, config, digest and how to run it."""

    name: str
    cfg: Any
    kind: str  # prune | train | search | eval | export (which result file marks it complete)
    digest: str

    def complete(self) -> bool:
        return complete(self.cfg.output_dir, self.kind)


def plan_stages(plan: Plan) -> list[Stage]:
    """Every stage in run order with its digest (which folds in the digests it reads from)."""
    stages: list[Stage] = []
    digests: dict[str, str] = {}

    def add(name: str, cfg: Any, kind: str, upstream: list[str]) -> None:
        digests[name] = stage_digest(cfg, [digests[u] for u in upstream])
        stages.append(Stage(name, cfg, kind, digests[name]))

    add("prune", plan.prune, "prune", [])
    add("train", plan.train, "train", ["prune"])
    add("search", plan.search, "search", ["train"])
    for name, tc in plan.baseline_trains.items():
        add(f"train_{name}", tc, "train", ["prune"] if name == "lora_pruned" else [])
    reads = {
        "dense_base": [],
        "pruned_base": ["prune"],
        "shears_heuristic": ["train"],
        "shears_searched": ["search"],
        "lora_pruned": ["train_lora_pruned"],
        "lora_dense": ["train_lora_dense"],
    }
    for name, ec in plan.evals.items():
        add(f"eval_{name}", ec, "eval", reads[name])
    add("export", plan.export, "export", ["search", "eval_shears_searched"])
    return stages


def _run_stage(st: Stage, status: str) -> None:
    """Run one stage; ``rerun`` replaces its earlier output, ``resume`` continues it."""
    from shears.evaluate.runner import run_eval
    from shears.export.run import run_export
    from shears.prune.api import run_prune
    from shears.search.run import run_search
    from shears.train.nls import run_train

    again, cfg = status == "rerun", st.cfg
    if st.kind == "prune":
        run_prune(cfg, overwrite=True)  # atomic; the run folder's own prune output
    elif st.kind in ("train", "search"):
        fn = run_train if st.kind == "train" else run_search
        fn(replace(cfg, overwrite=again, resume=not again))
    else:
        (run_eval if st.kind == "eval" else run_export)(replace(cfg, overwrite=True))


def run_pipeline(cfg: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; return the report dict (also ``report.json``).

    Stages whose settings (and inputs) did not change since they finished are reused; the first
    changed stage and every stage after it that reads from it run again, replacing their earlier
    outputs atomically. ``overwrite`` runs every stage again."""
    from shears.models import validate_model_spec
    from shears.prune.api import preflight

    plan = build_plan(cfg)  # every config error surfaces here, before any work
    validate_model_spec(cfg.model)
    run = _check_run_dir(cfg)
    stages = plan_stages(plan)
    ledger = Ledger(run)
    _adopt_legacy(run, cfg, ledger, stages)
    status = {st.name: ledger.status(st.name, st.digest, st.complete()) for st in stages}
    if overwrite:
        status = {k: "rerun" if v in ("reuse", "rerun") else v for k, v in status.items()}
    reused = [k for k, v in status.items() if v == "reuse"]
    if status["train"] != "reuse":
        _preflight_data(plan)
        _preflight_model(plan)
    if status["prune"] != "reuse":
        preflight(plan.prune, overwrite=True)
    logger.info(
        "stages reused: %s; to run: %s",
        ", ".join(reused) or "none",
        ", ".join(f"{k} ({v})" for k, v in status.items() if v != "reuse") or "none",
    )
    claim(run, "run", RUN_OWNED)
    atomic_write_json(run / RUN_CONFIG, to_dict(cfg))
    timer = _Timer(run / RUN_TIMES)
    for st in stages:
        if status[st.name] == "reuse":
            timer.run(st.name, True, None)
            continue
        ledger.mark(st.name, st.digest, False)
        timer.run(st.name, False, lambda st=st: _run_stage(st, status[st.name]))
        ledger.mark(st.name, st.digest, True)
    return write_report(cfg, plan, timer.times, {"reused": reused, "status": status})
