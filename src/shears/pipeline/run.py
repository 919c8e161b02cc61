"""Run prune -> train -> search -> eval -> export (-> deploy) -> report under one run folder.

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
from dataclasses import replace
from pathlib import Path
from typing import Any

from shears.artifacts import RUN_CONFIG, RUN_LEDGER, RUN_TIMES, TrainSettings
from shears.config import added_defaults, to_dict
from shears.errors import ShearsError
from shears.outputs import check_output, claim
from shears.pipeline.config import RunConfig
from shears.pipeline.ledger import Ledger
from shears.pipeline.plan import Plan, Step, build_plan, plan_steps
from shears.pipeline.report import write_report
from shears.utils import atomic_write_json

logger = logging.getLogger(__name__)


def _preflight_model(plan: Plan) -> None:
    """Training groups and the search's start file against the base model's structure (a
    weightless skeleton), before the first stage. (Prune targets: :func:`shears.prune.run.check`.)"""
    from shears.adapters.search_space import SearchSpace
    from shears.adapters.select import SEARCH_START, resolve_sub_adapter
    from shears.models import model_skeleton

    p = plan.prune
    skeleton = model_skeleton(p.model, p.gguf_file, p.trust_remote_code)
    if skeleton is None:
        return
    space = SearchSpace.build(skeleton, plan.train.adapter, plan.train.space)
    resolve_sub_adapter(plan.search.start, space, SEARCH_START)


def _preflight_data(plan: Plan) -> None:
    """Load (and so check) the training, validation and test data before any stage runs, so a
    missing file or field is reported first, not after pruning."""
    from shears.context import check_plan_context
    from shears.evaluate.suite import prepare_tasks
    from shears.search.config import OBJECTIVE_FIELDS
    from shears.search.data import load_validation_examples, resolve_data_settings
    from shears.train.data import load_train_examples

    check_plan_context(plan)  # sequence lengths against the base model's positions
    if not load_train_examples(plan.train):
        raise ShearsError(f"task {plan.train.data!r} holds no training examples")
    settings = resolve_data_settings(plan.search, TrainSettings.from_dict(to_dict(plan.train)))
    load_validation_examples(settings, OBJECTIVE_FIELDS[plan.search.objective])
    first = next(iter(plan.evals.values()))
    prepare_tasks(first.task_specs(), first)


def _preflight_deploy(plan: Plan) -> None:
    """What the deploy step needs from this machine and its calibration source, checked before
    the first stage (the rest of ``shears.deploy.run.check`` needs the stages' outputs)."""
    from shears.data.spec import validate_source
    from shears.deploy import calibrate
    from shears.deploy.cpu import cpu_info
    from shears.deploy.run import _require_openvino

    d = plan.deploy
    _require_openvino()
    if d.precision == "w8a8-sparse" and d.require_amx and not cpu_info()["amx"]:
        raise ShearsError(
            "deploy.precision w8a8-sparse: this CPU has no AMX, which OpenVINO's sparse int8 "
            "kernel needs; use deploy.precision int8-weights or w8a8, or deploy.require_amx "
            "false to export for another machine"
        )
    if d.precision.startswith("w8a8") and d.calibration not in (calibrate.AUTO, calibrate.TASK):
        validate_source(d.calibration, "deploy.calibration")  # task: training data, checked above


RUN_OWNED = (
    "prune",
    "train",
    "search",
    "eval",
    "export",
    "deploy",
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


def _adopt_legacy(run: Path, cfg: RunConfig, ledger: Ledger, steps: list[Step]) -> None:
    """A run folder of a version without ``stages.json``: its complete stages count as done when
    its saved config equals this one."""
    saved = run / RUN_CONFIG
    if ledger.stages or not saved.is_file():
        return
    try:
        old = json.loads(saved.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return
    added = added_defaults(RunConfig)  # settings added later: absent from an old record

    def settings(data: dict) -> dict:
        return {k: v for k, v in data.items() if not (k in added and v == added[k])}

    if isinstance(old, dict) and settings(old) == settings(json.loads(json.dumps(to_dict(cfg)))):
        for st in steps:
            if st.complete():
                ledger.mark(st.name, st.digest, True)


class StepTimer:
    """Step wall times, persisted (``path``) so that a resumed run reports the times of earlier
    steps."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        known = path is not None and path.is_file()
        self.times: dict[str, float] = json.loads(path.read_text()) if known else {}

    def run(self, name: str, done: bool, fn) -> None:
        if done:
            logger.info("stage %s: up to date, reused", name)
            return
        logger.info("stage %s: starting", name)
        t0 = time.perf_counter()
        fn()
        self.times[name] = round(time.perf_counter() - t0, 2)
        if self.path is not None:
            atomic_write_json(self.path, self.times)
        logger.info("stage %s: done in %.1f s", name, self.times[name])


def run_step(st: Step, status: str, progress: bool = True) -> None:
    """Run one step; ``rerun`` replaces its earlier output, ``resume`` continues it
    (``progress``: the pruning progress bars)."""
    from shears.evaluate.run import run as run_eval
    from shears.export.run import run as run_export
    from shears.prune.run import run as run_prune
    from shears.search.run import run as run_search
    from shears.train.run import run as run_train

    again, cfg = status == "rerun", st.cfg
    if st.kind == "prune":
        run_prune(cfg, overwrite=True, progress=progress)  # atomic; replaces its own output
    elif st.kind in ("train", "search"):
        fn = run_train if st.kind == "train" else run_search
        fn(replace(cfg, overwrite=again, resume=not again))
    elif st.kind == "deploy":
        from shears.deploy.run import run as run_deploy  # the deploy extra: only when deploying

        run_deploy(replace(cfg, overwrite=True))  # atomic; replaces its own output
    else:
        (run_eval if st.kind == "eval" else run_export)(replace(cfg, overwrite=True))


def step_status(steps: list[Step], ledger: Ledger, overwrite: bool = False) -> dict[str, str]:
    """``{step: reuse | resume | rerun | new}``; ``overwrite``: no step is reused."""
    status = {st.name: ledger.status(st.name, st.digest, st.complete()) for st in steps}
    if overwrite:
        status = {k: "rerun" if v in ("reuse", "rerun") else v for k, v in status.items()}
    return status


def run_steps(
    steps: list[Step],
    status: dict[str, str],
    ledger: Ledger,
    timer: StepTimer | None = None,
    progress: bool = True,
) -> None:
    """Run, in order, every step that is not reused; the ledger records each one as started,
    then as done (``timer``: their wall times)."""
    timer = timer or StepTimer()
    for st in steps:
        if status[st.name] == "reuse":
            timer.run(st.name, True, None)
            continue
        ledger.mark(st.name, st.digest, False)
        timer.run(st.name, False, lambda st=st: run_step(st, status[st.name], progress))
        ledger.mark(st.name, st.digest, True)


def run_pipeline(cfg: RunConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; return the report dict (also ``report.json``).

    Stages whose settings (and inputs) did not change since they finished are reused; the first
    changed stage and every stage after it that reads from it run again, replacing their earlier
    outputs atomically. ``overwrite`` runs every stage again."""
    from shears.models import validate_model_spec
    from shears.prune.run import check as preflight

    plan = build_plan(cfg)  # every config error surfaces here, before any work
    validate_model_spec(cfg.model)
    run = _check_run_dir(cfg)
    steps = plan_steps(plan)
    ledger = Ledger(run / RUN_LEDGER)
    _adopt_legacy(run, cfg, ledger, steps)
    status = step_status(steps, ledger, overwrite)
    reused = [k for k, v in status.items() if v == "reuse"]
    if status["train"] != "reuse":
        _preflight_data(plan)
        _preflight_model(plan)
    if status["prune"] != "reuse":
        preflight(plan.prune, overwrite=True)
    if plan.deploy is not None and status["deploy"] != "reuse":
        _preflight_deploy(plan)
    logger.info(
        "stages reused: %s; to run: %s",
        ", ".join(reused) or "none",
        ", ".join(f"{k} ({v})" for k, v in status.items() if v != "reuse") or "none",
    )
    claim(run, "run", RUN_OWNED)
    atomic_write_json(run / RUN_CONFIG, to_dict(cfg))
    timer = StepTimer(run / RUN_TIMES)
    run_steps(steps, status, ledger, timer)
    return write_report(cfg, plan, timer.times, {"reused": reused, "status": status})
