"""The plan of a run: every stage config, built and validated before any work, as a list of steps.

``build_plan`` turns a :class:`RunConfig` into one validated config per stage (errors name the
section and key: ``train.lr``); ``plan_steps`` lists them in run order, each a :class:`Step` with
the steps it reads from and a digest of its settings and theirs (:mod:`shears.pipeline.ledger`).
A ``deploy:`` section adds a ``deploy`` step after ``export``; without one the plan is as before.
Where each step writes is a ``Folders`` function (step name -> folder): ``shears run`` uses
sub-folders of its run folder (:func:`run_folders`); ``bench/study.py`` shares some steps
between runs by giving them one folder.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shears.artifacts import EVAL_RESULTS, SEARCH_RESULTS, complete
from shears.config import from_dict, rename_old_keys
from shears.errors import ShearsError
from shears.pipeline.config import RunConfig
from shears.pipeline.ledger import stage_digest

logger = logging.getLogger(__name__)

Folders = Callable[[str], Path]  # step name -> the folder it writes

# Evaluated variants -> the steps whose output they read (besides their model).
EVAL_READS = {
    "dense_base": [],
    "pruned_base": ["prune"],
    "shears_heuristic": ["train"],
    "shears_searched": ["search"],
    "lora_pruned": ["train_lora_pruned"],
    "lora_dense": ["train_lora_dense"],
}

# ``train.teacher_adapter`` naming the run's own dense LoRA baseline: distillation from the
# tuned dense model, trained first (needs ``baselines``).
TUNED_TEACHER = "lora_dense"

# The deploy step (with a ``deploy:`` section) reads the pruned base, the super-adapter and the
# search's choice.
DEPLOY_READS = ["prune", "train", "search"]


def run_folders(run_dir: str | Path) -> Folders:
    """Where the steps of ``shears run`` write: ``prune/``, ``train/``, ``search/``, ``export/``,
    ``deploy/``, ``eval/<variant>/`` and ``baselines/<variant>/`` (``train_<variant>``) of the run folder."""
    run = Path(run_dir)

    def folder(step: str) -> Path:
        if step.startswith("eval_"):
            return run / "eval" / step.removeprefix("eval_")
        if step.startswith("train_"):
            return run / "baselines" / step.removeprefix("train_")
        return run / step

    return folder


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
    deploy: Any = None  # DeployConfig, with a ``deploy:`` section; None: no deploy step
    teacher_step: str | None = None  # the baseline step the distilling trains read (tuned teacher)


# ---------------------------------------------------------------------------- stage configs


def _with_seed(section: dict, seed: int, key: str = "seed") -> dict:
    return {key: seed, **section}


def _build(cls: type, section: str, data: dict) -> Any:
    """``cls`` from one section of the run config; errors name the key as ``section.key``."""
    data = rename_old_keys(cls, data, f"{section}.")  # former names, warned about once
    try:
        return from_dict(cls, data)
    except ShearsError as exc:
        msg = str(exc).replace("config key '", f"config key '{section}.", 1)
        raise ShearsError(msg) from exc


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


def _prune_config(cfg: RunConfig, folder: Folders) -> Any:
    from shears.prune.config import PruneConfig

    data = {"model": cfg.model, "output_dir": str(folder("prune"))}
    return _build(PruneConfig, "prune", {**_with_seed(cfg.prune, cfg.seed), **data})


def _search_config(cfg: RunConfig, folder: Folders) -> Any:
    from shears.search.config import SearchConfig

    data = {**_with_seed(cfg.search, cfg.seed), "adapter": str(folder("train"))}
    data["model"] = str(folder("prune"))
    if cfg.validation:
        data["data"] = cfg.validation
    data.update(output_dir=str(folder("search")), resume=True)
    return _build(SearchConfig, "search", data)


def _train_config(cfg: RunConfig, folder: Folders, val_size: int) -> tuple[Any, dict[str, Any]]:
    """The training config and where the search's validation data comes from (a file task
    holds its last records out of training)."""
    from shears.train.config import TrainConfig

    data = {**_with_seed(cfg.train, cfg.seed), "data": cfg.task, "resume": True}
    validation = _hold_out(cfg, data, val_size)
    data.update(model=str(folder("prune")), output_dir=str(folder("train")))
    if data.get("teacher_adapter") == TUNED_TEACHER:
        if not cfg.baselines:
            raise ShearsError(
                f"train.teacher_adapter: {TUNED_TEACHER} distils from this run's dense LoRA "
                "baseline: set baselines: true (or `shears run --baselines`), or name an adapter "
                "folder"
            )
        data["teacher_adapter"] = str(folder(f"train_{TUNED_TEACHER}"))
    return _build(TrainConfig, "train", data), validation


def _baseline_trains(cfg: RunConfig, folder: Folders, train: Any) -> dict[str, Any]:
    """LoRA at the super-adapter's largest rank (one width) on the pruned and the dense model
    (the pruned one distils as the super-adapter does; the dense one, the teacher itself, not)."""
    if not cfg.baselines:
        return {}
    fixed = replace(train.space, widths=[train.adapter.r_max])
    models = {"lora_pruned": str(folder("prune")), "lora_dense": cfg.model}
    return {
        name: replace(
            train,
            model=model,
            output_dir=str(folder(f"train_{name}")),
            space=fixed,
            **({"distill": False, "teacher_adapter": None} if name == "lora_dense" else {}),
        )
        for name, model in models.items()
    }


def _eval_targets(cfg: RunConfig, folder: Folders) -> dict[str, tuple[str, str | None, str]]:
    """Evaluated variants, in report order: ``{name: (model, adapter folder, sub-adapter)}``."""
    pruned, adapter = str(folder("prune")), str(folder("train"))
    targets: dict[str, tuple[str, str | None, str]] = {}
    if cfg.evaluate_dense:
        targets["dense_base"] = (cfg.model, None, "heuristic")
    targets["pruned_base"] = (pruned, None, "heuristic")
    targets["shears_heuristic"] = (pruned, adapter, "heuristic")
    targets["shears_searched"] = (pruned, adapter, str(folder("search") / SEARCH_RESULTS))
    if cfg.baselines:
        targets["lora_pruned"] = (pruned, str(folder("train_lora_pruned")), "max")
        targets["lora_dense"] = (cfg.model, str(folder("train_lora_dense")), "max")
    return targets


def _eval_configs(cfg: RunConfig, folder: Folders, prompt_style: str) -> dict[str, Any]:
    from shears.evaluate.config import EvalConfig

    section = {**_with_seed(cfg.eval, cfg.seed), "tasks": cfg.test_tasks}
    section = rename_old_keys(EvalConfig, section, "eval.")  # warned about once, not per variant
    evals = {}
    for name, (model, adapter, sub) in _eval_targets(cfg, folder).items():
        data = {**section, "model": model, "output_dir": str(folder(f"eval_{name}"))}
        data["sub_adapter"] = sub
        data.setdefault("prompt_style", prompt_style)
        if adapter:
            data["adapter"] = adapter
        evals[name] = _build(EvalConfig, "eval", data)
    return evals


def _export_config(cfg: RunConfig, folder: Folders) -> Any:
    from shears.export.config import ExportConfig

    data = {
        **cfg.export,
        "adapter": str(folder("train")),
        "model": str(folder("prune")),
        "output_dir": str(folder("export")),
        "sub_adapter": str(folder("search") / SEARCH_RESULTS),
        "eval_results": str(folder("eval_shears_searched") / EVAL_RESULTS),
    }
    return _build(ExportConfig, "export", data)


def _deploy_config(cfg: RunConfig, folder: Folders) -> Any:
    """The pruned base + the searched sub-adapter as OpenVINO IR (``None``: no ``deploy:``)."""
    if cfg.deploy is None:
        return None
    from shears.deploy.config import DeployConfig

    data = {
        **_with_seed(cfg.deploy, cfg.seed),
        "model": str(folder("prune")),
        "adapter": str(folder("train")),
        "sub_adapter": str(folder("search") / SEARCH_RESULTS),
        "output_dir": str(folder("deploy")),
    }
    try:
        return _build(DeployConfig, "deploy", data)
    except ShearsError as exc:  # DeployConfig names its flags (--merge): name the section's keys
        msg = re.sub(r"--([a-z][a-z-]*)", lambda m: "deploy." + m[1].replace("-", "_"), str(exc))
        if "deploy." not in msg:
            msg = f"deploy section: {msg}"
        raise ShearsError(msg) from exc


def build_plan(cfg: RunConfig, folders: Folders | None = None) -> Plan:
    """Turn a RunConfig into validated stage configs (errors name the section and key).
    ``folders``: where each step writes (default: sub-folders of ``cfg.run_dir``)."""
    folder = folders or run_folders(cfg.run_dir)
    prune = _prune_config(cfg, folder)
    search = _search_config(cfg, folder)
    train, validation = _train_config(cfg, folder, search.val_size)
    evals = _eval_configs(cfg, folder, train.prompt_style)
    baselines = _baseline_trains(cfg, folder, train)
    export = _export_config(cfg, folder)
    deploy = _deploy_config(cfg, folder)
    tuned = train.teacher_adapter == str(folder(f"train_{TUNED_TEACHER}"))
    teacher = f"train_{TUNED_TEACHER}" if train.distill and tuned else None
    return Plan(prune, train, search, export, evals, baselines, validation, deploy, teacher)


# ---------------------------------------------------------------------------- steps


@dataclass
class Step:
    """One step of a run: its name, config and digest (of its settings and of the steps it
    reads from)."""

    name: str
    cfg: Any
    kind: str  # prune | train | search | eval | export | deploy (its result file marks it complete)
    digest: str

    def complete(self) -> bool:
        return complete(self.cfg.output_dir, self.kind)


def plan_steps(plan: Plan) -> list[Step]:
    """Every step of ``plan`` in run order, with its digest (which folds in the digests of the
    steps it reads from)."""
    steps: list[Step] = []
    digests: dict[str, str] = {}

    def add(name: str, cfg: Any, kind: str, reads: list[str]) -> None:
        digests[name] = stage_digest(cfg, [digests[u] for u in reads])
        steps.append(Step(name, cfg, kind, digests[name]))

    teacher = [plan.teacher_step] if plan.teacher_step else []  # trained first, then read
    add("prune", plan.prune, "prune", [])
    for name in teacher:
        add(name, plan.baseline_trains[name.removeprefix("train_")], "train", [])
    add("train", plan.train, "train", ["prune", *teacher])
    add("search", plan.search, "search", ["train"])
    for name, tc in plan.baseline_trains.items():
        if f"train_{name}" not in digests:
            add(f"train_{name}", tc, "train", ["prune", *teacher] if name == "lora_pruned" else [])
    for name, ec in plan.evals.items():
        add(f"eval_{name}", ec, "eval", EVAL_READS[name])
    add("export", plan.export, "export", ["search", "eval_shears_searched"])
    if plan.deploy is not None:
        add("deploy", plan.deploy, "deploy", DEPLOY_READS)
    return steps
