"""``run`` (what ``shears eval`` runs; ``shears.evaluate.run_eval``): check -> load -> evaluate ->
write.

:func:`check` verifies everything it can before loading the model (tasks and their data, the
output folder, the sub-adapter config against the adapter's search space); :func:`load` loads the
model and the adapter and counts parameters at the active sub-adapter rank (with
:func:`check_model`, also the loader of ``shears generate``: any :class:`ModelSourceConfig`); the tasks
run (:func:`shears.evaluate.suite.evaluate_model`); :func:`write_results` writes :data:`RESULTS`
(``eval_results.json``, an :class:`~shears.evaluate.result.EvalResult`) and
``predictions.jsonl`` atomically.

Launched as several processes (``accelerate launch --num_processes N -m shears eval``, ``torchrun
--nproc_per_node N -m shears eval``), every process checks and loads the same, the tasks share
their batches between them (:mod:`shears.evaluate.parallel`), and the main process alone logs and
writes the results, the same numbers as one process.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from shears.adapters.io import adapter_kind
from shears.adapters.search_space import SearchSpace
from shears.adapters.select import SubAdapterChoice
from shears.artifacts import EVAL_PREDICTIONS, EVAL_RESULTS, config_record, read_train_settings
from shears.context import check_eval_context
from shears.errors import ShearsError
from shears.evaluate.config import EvalConfig, ModelSourceConfig
from shears.evaluate.parallel import SINGLE, DataParallel
from shears.evaluate.result import EvalResult, SubAdapterUsed
from shears.evaluate.suite import evaluate_model, prepare_tasks
from shears.evaluate.tasks import TaskSpec
from shears.models import max_positions

logger = logging.getLogger(__name__)

RESULTS = EVAL_RESULTS  # the stage's results file: its presence marks the output complete


# ---------------------------------------------------------------------------- adapters


def find_prompt_style(adapter_dir: str | None) -> str | None:
    """``prompt_style`` of the training run of the adapter (its ``train_config.json``)."""
    return read_train_settings(adapter_dir).prompt_style


def attach_adapter(model: nn.Module, cfg: ModelSourceConfig, sub_config: dict | None) -> nn.Module:
    """Load ``cfg.adapter`` onto ``model`` (super-adapter with ``sub_config`` active, or PEFT)."""
    kind = adapter_kind(cfg.adapter)
    if kind == "super":
        from shears.adapters.io import SuperAdapter

        adapter = SuperAdapter.load(model, cfg.adapter, dropout=0.0)
        adapter.space.apply(adapter.layers, sub_config)
        return model
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, cfg.adapter, is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ShearsError(f"PEFT adapter {cfg.adapter!r} does not fit the model: {first}") from exc
    peft_model.eval()
    return peft_model


# ---------------------------------------------------------------------------- check


@dataclass
class ModelPlan:
    """What :func:`check_model` established about the model and its adapter before loading."""

    kind: str | None  # adapter kind: super | peft | None
    choice: SubAdapterChoice | None
    space: SearchSpace | None
    style: str


@dataclass
class EvalPlan(ModelPlan):
    """What :func:`check` established before the model is loaded."""

    out: Path
    specs: list[TaskSpec]
    data: dict[str, list[dict]]


def _check_sub_adapter(
    cfg: ModelSourceConfig, kind: str | None, action: str = "evaluated"
) -> tuple[SubAdapterChoice | None, SearchSpace | None]:
    """The sub-adapter of a super-adapter, checked against its search space."""
    if kind == "super":
        from shears.adapters.io import SuperAdapter, warn_if_other_base
        from shears.adapters.select import EVAL_SUB_ADAPTER, resolve_sub_adapter

        space = SuperAdapter.read(cfg.adapter).space
        choice = resolve_sub_adapter(cfg.sub_adapter, space, EVAL_SUB_ADAPTER)
        warn_if_other_base(cfg.adapter, cfg.model, action)
        return choice, space
    if kind == "peft" and cfg.sub_adapter not in ("heuristic",):
        logger.warning("--sub-adapter is ignored for a PEFT adapter (its ranks are fixed)")
    return None, None


def check_model(cfg: ModelSourceConfig, action: str = "evaluated") -> ModelPlan:
    """The model spec, the adapter and its sub-adapter, and the prompt style, checked without
    loading anything (a ShearsError on bad input); ``action`` words the other-base warning."""
    from shears.deploy.model import is_deployed
    from shears.models import validate_model_spec

    validate_model_spec(cfg.model, cfg.gguf_file)
    if cfg.adapter and is_deployed(cfg.model):
        raise ShearsError(
            f"--adapter {cfg.adapter!r} cannot be added to the deployed model {cfg.model!r}: "
            "a deployed IR holds its adapter (if any) from `shears deploy --adapter`; drop --adapter"
        )
    kind = adapter_kind(cfg.adapter) if cfg.adapter else None
    choice, space = _check_sub_adapter(cfg, kind, action)
    style = cfg.prompt_style or find_prompt_style(cfg.adapter) or "alpaca"
    return ModelPlan(kind, choice, space, style)


def check(cfg: EvalConfig) -> EvalPlan:
    """Everything checkable without the model (a ShearsError on bad input); loads the task data."""
    from shears.outputs import check_output

    reads = [cfg.model, cfg.adapter, cfg.sub_adapter, *(s.path for s in cfg.task_specs())]
    out = check_output(cfg.output_dir, "eval", overwrite=cfg.overwrite, inputs=reads)
    m = check_model(cfg)
    specs = cfg.task_specs()
    check_eval_context(cfg, specs, max_positions(cfg.model, cfg.gguf_file))  # before the data
    data = prepare_tasks(specs, cfg)
    return EvalPlan(m.kind, m.choice, m.space, m.style, out=out, specs=specs, data=data)


# ---------------------------------------------------------------------------- load


def load(
    cfg: ModelSourceConfig, plan: ModelPlan, parallel: DataParallel = SINGLE
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """``(model, tokenizer, parameter counts)``: the model with its adapter attached and, for a
    super-adapter, the sub-adapter folded into the base weights (on this process's own GPU when
    ``parallel`` shares a machine's GPUs)."""
    from shears.models import load_model
    from shears.sparsity import count_nonzero_parameters

    logger.info("loading %s", cfg.model)
    device = parallel.device(cfg.device)
    model, tok = load_model(cfg.model, cfg.dtype, device, cfg.gguf_file)
    if cfg.adapter:
        model = attach_adapter(model, cfg, plan.choice.config if plan.choice else None)
    if hasattr(model, "parameter_counts"):  # a deployed IR: its own account of its weights
        counts = model.parameter_counts()
        logger.info("running a deployed IR (matmul weights %.2f%% zero), prompt style %s",
                    100 * (counts["linear_sparsity"] or 0.0), plan.style)  # fmt: skip
    else:
        counts = count_nonzero_parameters(model)
        logger.info(
            "running %d non-zero of %d parameters (sparsity %.2f%%), prompt style %s",
            counts["nonzero_parameters"],
            counts["parameters"],
            100 * counts["sparsity"],
            plan.style,
        )
    if plan.kind == "super":
        # the sub-adapter is fixed from here on: fold it into the base weights (exact: the same
        # delta, masked when the adapter is mask-aware) so generation runs one matmul per layer
        from shears.adapters.elastic_lora import elastic_layers

        for layer in elastic_layers(model).values():
            layer.merge()
    return model, tok, counts


# ---------------------------------------------------------------------------- result and write


def sub_adapter_used(plan: ModelPlan) -> SubAdapterUsed | None:
    """The active sub-adapter of a super-adapter and its adapter parameters (None otherwise)."""
    if plan.choice is None:
        return None
    used = plan.space.adapter_parameters(plan.choice.config)
    return SubAdapterUsed(plan.choice.label, plan.choice.config, used)


def _result(
    cfg: EvalConfig,
    plan: EvalPlan,
    model: nn.Module,
    counts: dict,
    res: dict,
    t_start: float,
    world_size: int = 1,
) -> EvalResult:
    """The :class:`EvalResult` of ``res`` (:func:`evaluate_model` without its predictions)."""
    from shears.utils import package_versions, peak_memory

    sub = sub_adapter_used(plan)
    param = next(model.parameters())
    return EvalResult(
        model=cfg.model,
        adapter=cfg.adapter,
        adapter_kind=plan.kind,
        sub_adapter=sub,
        **res,
        parameters=counts,
        settings=config_record(cfg),
        device=str(param.device),
        dtype=str(param.dtype).replace("torch.", ""),
        total_time_s=round(time.perf_counter() - t_start, 3),
        memory=peak_memory(),
        versions=package_versions("shears", "torch", "transformers", python=True),
        world_size=world_size,
    )


def write_results(out: Path, result: EvalResult, predictions: dict[str, list[dict]]) -> None:
    """The one writer of ``eval_results.json`` and ``predictions.jsonl`` (each atomically)."""
    from shears.outputs import claim
    from shears.utils import atomic_write_json, atomic_write_text

    lines = [
        json.dumps({"task": name, "index": i, **rec}, default=str)
        for name, recs in predictions.items()
        for i, rec in enumerate(recs)
    ]
    claim(out, "eval", [EVAL_PREDICTIONS, RESULTS])
    atomic_write_text(out / EVAL_PREDICTIONS, "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_json(out / RESULTS, result.to_dict())


# ---------------------------------------------------------------------------- run


def quiet_other_ranks(parallel: DataParallel) -> None:
    """Log and show progress bars only on the main process of a data-parallel launch (errors
    still show everywhere)."""
    if not parallel.is_main:
        from transformers.utils import logging as hf_logging

        logging.getLogger("shears").setLevel(logging.ERROR)
        hf_logging.disable_progress_bar()


def run(cfg: EvalConfig) -> EvalResult:
    """Evaluate ``cfg.model`` (+ adapter) on ``cfg.tasks``; write results; return them (on every
    process of a data-parallel launch; the main one writes)."""
    t_start = time.perf_counter()
    parallel = DataParallel.current(cfg.device)
    quiet_other_ranks(parallel)
    plan = check(cfg)
    parallel.wait()  # every process checked the output folder before the main one writes it
    model, tok, counts = load(cfg, plan, parallel)
    res = evaluate_model(
        model, tok, plan.specs, cfg, data=plan.data, prompt_style=plan.style, parallel=parallel
    )
    predictions = res.pop("predictions")
    result = _result(cfg, plan, model, counts, res, t_start, parallel.world)
    if not parallel.is_main:
        return result
    write_results(plan.out, result, predictions)
    logger.info(
        "mean accuracy %s over %d task(s); wrote %s",
        "n/a" if result.mean_accuracy is None else f"{result.mean_accuracy:.4f}",
        result.num_tasks_in_mean,
        plan.out / RESULTS,
    )
    return result
