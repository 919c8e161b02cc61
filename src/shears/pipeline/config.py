"""``shears run`` configuration: shared settings plus one section per stage.

Each section holds the fields of that stage's config (``PruneConfig``, ``TrainConfig``,
``SearchConfig``, ``EvalConfig``, ``ExportConfig``, ``DeployConfig``) except those the pipeline
wires together (model paths, output folders, data of the task). All sections are validated into
their dataclasses before any work starts, so an unknown key or a bad value fails at once with its
full name. The ``deploy`` section is optional: absent (or null), no deploy step runs; a mapping,
even ``{}``, adds one after export.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from shears.config import ADDED, apply_overrides, field, from_dict, load_config_file
from shears.errors import ShearsError

STAGES = ("prune", "train", "search", "eval", "export")
OPTIONAL_STAGES = ("deploy",)  # sections that add a step only when given

# Fields the pipeline sets itself; a section that sets them is an error (it would be ignored).
WIRED = {
    "prune": {"model", "output_dir"},
    "train": {"model", "output_dir", "data", "resume", "overwrite"},
    "search": {"adapter", "model", "output_dir", "resume", "overwrite"},
    "eval": {"model", "adapter", "sub_adapter", "output_dir", "tasks", "overwrite"},
    "export": {"adapter", "model", "output_dir", "sub_adapter", "eval_results", "overwrite"},
    "deploy": {"model", "adapter", "sub_adapter", "output_dir", "overwrite"},
}


@dataclass
class RunConfig:
    """One Shears run. Stage sections override the defaults of each stage's own config."""

    run_dir: str = field("runs/default", help="folder that receives one sub-folder per stage")
    model: str = field("smollm2-135m", help="base model: named default, HF folder, .gguf or hub id")
    task: str = field(
        "gym:basic_arithmetic",
        help="training data (gym:<generator> split by template/seed, JSON file, `datasets` name)",
    )
    validation: str | None = field(
        None,
        help="validation data of the search (JSON/JSONL file or `datasets` name); default: the "
        "validation split of a gym task or dataset, or the last search.val_size records of a file "
        "task, kept out of training",
    )
    eval_tasks: list[str] = field(
        [], help="test tasks (default: math on the test split of a gym task)"
    )
    seed: int = field(0, help="seed of every stage (calibration, training, search)")
    baselines: bool = field(
        False, help="also train and evaluate LoRA (fixed rank) on the pruned and the dense model"
    )
    evaluate_dense: bool = field(True, help="evaluate the untuned dense base model too")
    prune: dict[str, Any] = field({}, help="PruneConfig fields (method, sparsity, nsamples...)")
    train: dict[str, Any] = field({}, help="TrainConfig fields (adapter, space, lr, max_steps...)")
    search: dict[str, Any] = field({}, help="SearchConfig fields (algorithm, budget...)")
    eval: dict[str, Any] = field({}, help="EvalConfig fields (limit, max_new_tokens...)")
    export: dict[str, Any] = field({}, help="ExportConfig fields (merge, keep_sparsity...)")
    deploy: dict[str, Any] | None = field(
        None,
        help="DeployConfig fields (precision, merge, verify...): the section's presence turns on "
        "a deploy step after export (the pruned base + the searched sub-adapter as OpenVINO IR "
        "in <run_dir>/deploy; `deploy: {}` deploys with its defaults); absent or null: no "
        "deploy. Needs the deploy extra",
        metadata=ADDED,
    )

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ShearsError("run_dir must not be empty")
        for stage in (*STAGES, *OPTIONAL_STAGES):
            wired = sorted(WIRED[stage] & set(getattr(self, stage) or {}))
            if wired:
                raise ShearsError(
                    f"config key {stage}.{wired[0]} is set by the pipeline; "
                    f"set the top-level key instead (run_dir, model, task, eval_tasks)"
                )
        if not self.eval_tasks and not self.task.startswith("gym:"):
            raise ShearsError(
                f"task {self.task!r} is not a reasoning-gym task; name the test tasks in eval_tasks"
            )

    @property
    def test_tasks(self) -> list[str]:
        return list(self.eval_tasks) or [f"math:{self.task}"]


def default_config_text() -> str:
    """The embedded default run (SmolLM2-135M, reasoning-gym, CPU-sized budgets)."""
    return resources.files("shears.configs").joinpath("default.yaml").read_text()


def load_run_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> RunConfig:
    """The embedded default, updated by a YAML/JSON file, updated by ``key.sub=value`` overrides.

    A user file starts from the default only when it says ``base: default``; otherwise from the
    dataclass defaults.
    """
    import yaml

    data: dict[str, Any] = yaml.safe_load(default_config_text()) if path is None else {}
    if path is not None:
        user = load_config_file(path)
        if user.pop("base", None) == "default":
            data = apply_overrides(yaml.safe_load(default_config_text()), [])
            for k, v in user.items():
                if isinstance(v, dict) and isinstance(data.get(k), dict):
                    data[k] = {**data[k], **v}
                else:
                    data[k] = v
        else:
            data = user
    data = apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)
