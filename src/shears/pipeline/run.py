"""Run prune -> train -> search -> eval -> export -> report under one run folder.

Every stage writes its own sub-folder and is skipped when that output is already complete, so a
killed run resumes where it stopped (training and search resume from their own checkpoints/logs).
The resolved config is saved as ``run_config.json``; resuming with a different config is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shears.config import from_dict, to_dict
from shears.errors import ShearsError
from shears.pipeline.config import RunConfig
from shears.utils import atomic_write_json

logger = logging.getLogger(__name__)

CONFIG_FILE = "run_config.json"
TIMES_FILE = "stage_times.json"


@dataclass
class Plan:
    """Every stage config of a run, built and validated before any work starts."""

    prune: Any
    train: Any
    search: Any
    export: Any
    evals: dict[str, Any]  # variant name -> EvalConfig
    baseline_trains: dict[str, Any]  # variant name -> TrainConfig (fixed-rank LoRA)


def result_files() -> dict[str, str]:
    """The file each stage writes last: its presence marks the stage's output complete.

    Taken from the stage modules themselves (imported here, not at start-up: they pull in
    transformers' Trainer and friends)."""
    from shears.evaluate.runner import RESULTS_FILE as EVAL
    from shears.export.run import RESULTS_FILE as EXPORT
    from shears.prune.api import REPORT_FILE as PRUNE
    from shears.search.run import RESULTS as SEARCH
    from shears.train.nls import RESULTS_FILE as TRAIN

    return {"prune": PRUNE, "train": TRAIN, "search": SEARCH, "eval": EVAL, "export": EXPORT}


def _with_seed(section: dict, seed: int, key: str = "seed") -> dict:
    return {key: seed, **section}


def build_plan(cfg: RunConfig) -> Plan:
    """Turn a RunConfig into validated stage configs (errors name the section and key)."""
    from shears.evaluate.runner import EvalConfig
    from shears.export.config import ExportConfig
    from shears.prune.config import PruneConfig
    from shears.search.config import SearchConfig
    from shears.train.config import TrainConfig

    run = Path(cfg.run_dir)
    files = result_files()
    pruned = str(run / "prune")
    adapter = str(run / "train")
    search_results = str(run / "search" / files["search"])

    def build(cls, section: str, data: dict) -> Any:
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
    train_base = {**_with_seed(cfg.train, cfg.seed), "data": cfg.task, "resume": True}
    train = build(TrainConfig, "train", {**train_base, "model": pruned, "output_dir": adapter})
    search = build(
        SearchConfig,
        "search",
        {
            **_with_seed(cfg.search, cfg.seed),
            "adapter": adapter,
            "model": pruned,
            "output_dir": str(run / "search"),
            "resume": True,
        },
    )
    evals: dict[str, Any] = {}
    ev = {**_with_seed(cfg.eval, cfg.seed), "tasks": cfg.test_tasks}
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
        r_max = train.space.widths[0]
        fixed = replace(train.space, widths=[r_max])
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
            "eval_results": str(run / "eval" / "shears_searched" / files["eval"]),
        },
    )
    return Plan(prune, train, search, export, evals, baseline_trains)


def _done(output_dir: str, stage: str) -> bool:
    """Whether ``output_dir`` holds the complete output of ``stage``."""
    return (Path(output_dir) / result_files()[stage]).is_file()


def _preflight_data(plan: Plan) -> None:
    """Load (and so check) the training data (unless training is complete) and the test data
    before any stage runs, so a missing file or field is reported first, not after pruning."""
    from shears.evaluate.runner import prepare_tasks
    from shears.train.data import load_train_examples

    if not _done(plan.train.output_dir, "train") and not load_train_examples(plan.train):
        raise ShearsError(f"task {plan.train.data!r} holds no training examples")
    first = next(iter(plan.evals.values()))
    prepare_tasks(first.task_specs(), first)


def _check_run_dir(cfg: RunConfig, overwrite: bool) -> Path:
    run = Path(cfg.run_dir)
    saved = run / CONFIG_FILE
    if run.exists() and overwrite:
        logger.info("--overwrite: removing the earlier run in %s", run)
        shutil.rmtree(run)
    elif saved.is_file():
        old = json.loads(saved.read_text())
        if old != json.loads(json.dumps(to_dict(cfg))):
            changed = sorted(
                k for k in set(old) | set(to_dict(cfg)) if old.get(k) != to_dict(cfg).get(k)
            )
            raise ShearsError(
                f"run folder {str(run)!r} holds a run with another config (differs in: "
                f"{', '.join(changed)}); pass --overwrite or choose another run_dir"
            )
    elif run.exists() and any(run.iterdir()):
        raise ShearsError(
            f"run folder {str(run)!r} exists but is not a Shears run; pass --overwrite or choose another run_dir"
        )
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, to_dict(cfg))
    return run


class _Timer:
    """Stage wall times, persisted so that a resumed run reports the times of earlier stages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, done: bool, fn) -> None:
        if done:
            logger.info("stage %s: already complete, skipped", name)
            return
        logger.info("stage %s: starting", name)
        t0 = time.perf_counter()
        fn()
        self.times[name] = round(time.perf_counter() - t0, 2)
        atomic_write_json(self.path, self.times)
        logger.info("stage %s: done in %.1f s", name, self.times[name])


def run_pipeline(cfg: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; return the report dict (also ``report.json``)."""
    from shears.evaluate.runner import run_eval
    from shears.export.run import run_export
    from shears.models import validate_model_spec
    from shears.pipeline.report import write_report
    from shears.prune.api import preflight, run_prune
    from shears.search.run import run_search
    from shears.train.nls import run_train

    plan = build_plan(cfg)  # every config error surfaces here, before any work
    validate_model_spec(cfg.model)
    _preflight_data(plan)
    run = _check_run_dir(cfg, overwrite)
    timer = _Timer(run / TIMES_FILE)
    pruned_done = _done(plan.prune.output_dir, "prune")
    if not pruned_done:
        preflight(plan.prune)
    timer.run("prune", pruned_done, lambda: run_prune(plan.prune))
    timer.run("train", _done(plan.train.output_dir, "train"), lambda: run_train(plan.train))
    timer.run("search", _done(plan.search.output_dir, "search"), lambda: run_search(plan.search))
    for name, tc in plan.baseline_trains.items():
        timer.run(f"train_{name}", _done(tc.output_dir, "train"), lambda tc=tc: run_train(tc))
    for name, ec in plan.evals.items():
        timer.run(f"eval_{name}", _done(ec.output_dir, "eval"), lambda ec=ec: run_eval(ec))
    timer.run("export", _done(plan.export.output_dir, "export"), lambda: run_export(plan.export))
    return write_report(cfg, plan, timer.times)
