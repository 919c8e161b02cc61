"""``evaluate_model``: run a list of tasks on an in-memory model (library API; ``shears eval``
calls it once the model is loaded).

One function per task kind turns the examples of a task into ``(metrics, prediction records)``;
:data:`TASK_RUNNERS` maps each kind to its function. The forward passes run under the autocast of
``cfg.precision`` (:func:`eval_autocast`); under data-parallel evaluation the processes share the
batches of every task and all end with every result (:mod:`shears.evaluate.parallel`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from shears.context import check_eval_context
from shears.errors import ShearsError
from shears.evaluate.config import EvalConfig
from shears.evaluate.parallel import SINGLE, DataParallel
from shears.evaluate.tasks import TaskSpec, load_task_data, parse_task
from shears.models import max_positions
from shears.precision import autocast, autocast_dtype, describe

logger = logging.getLogger(__name__)

Metrics = dict[str, Any]
Records = list[dict]


def prepare_tasks(specs: list[TaskSpec], cfg: EvalConfig) -> dict[str, list[dict]]:
    """Load and check the data of every task (no model needed): ``{task name: examples}``."""
    lmeval = [s.path for s in specs if s.kind == "lmeval"]
    if lmeval:
        from shears.evaluate.lmeval import check_lmeval_tasks

        check_lmeval_tasks(lmeval, cfg.lmeval_include_path)
    return {s.name: load_task_data(s, cfg.limit, cfg.gym_size) for s in specs}


# ---------------------------------------------------------------------------- one task per kind


def _question(e: dict) -> str:
    return e["instruction"] + (f"\n\n{e['input']}" if e.get("input") else "")


def _answer_records(examples: list[dict], recs: Records) -> Records:
    """Prediction records of a generative task: question, what was generated, the label."""
    return [
        {"input": _question(e), **r, "label": e["answer"]}
        for e, r in zip(examples, recs, strict=True)
    ]


def _math_task(model, tokenizer, spec, examples, cfg, style, dp) -> tuple[Metrics, Records]:
    """``math`` (a number) and ``letter`` (a choice letter) by greedy generation."""
    from shears.evaluate.math import math_accuracy

    kind = "number" if spec.kind == "math" else "letter"
    acc, recs = math_accuracy(
        model,
        tokenizer,
        examples,
        style,
        cfg.batch_size,
        cfg.max_new_tokens,
        kind,
        cfg.progress and dp.is_main,
        dp,
    )
    return {"accuracy": acc, "count": len(examples)}, _answer_records(examples, recs)


def _mc_gen_task(model, tokenizer, spec, examples, cfg, style, dp) -> tuple[Metrics, Records]:
    """Multiple choice by generation and answer-word matching."""
    from shears.evaluate.choice import generation_choice_accuracy

    progress = cfg.progress and dp.is_main
    acc, recs = generation_choice_accuracy(
        model, tokenizer, examples, style, cfg.batch_size, cfg.max_new_tokens, progress, dp
    )
    return {"accuracy": acc, "count": len(examples)}, _answer_records(examples, recs)


def _mc_task(model, tokenizer, spec, examples, cfg, style, dp) -> tuple[Metrics, Records]:
    """Multiple choice by the log-likelihood of each choice."""
    from shears.evaluate.choice import choice_metrics, choice_scores

    progress = cfg.progress and dp.is_main
    scores = choice_scores(model, tokenizer, examples, style, cfg.batch_size, progress, parallel=dp)
    metrics, picks = choice_metrics(scores, examples)
    preds = [
        {
            "input": _question(e),
            "choices": e["choices"],
            "output": e["choices"][p["acc"]],
            "extracted": p["acc"],
            "extracted_norm": p["acc_norm"],
            "label": e["label"],
            "correct": p["acc"] == e["label"],
            "loglikelihoods": [round(x, 4) for x in s],
        }
        for e, p, s in zip(examples, picks, scores, strict=True)
    ]
    return {"accuracy": metrics["acc"], **metrics, "count": len(examples)}, preds


def _ppl_task(model, tokenizer, spec, examples, cfg, style, dp) -> tuple[Metrics, Records]:
    """Perplexity of held-out text (no prediction records)."""
    from shears.data.calibration import heldout_ids
    from shears.evaluate.generate import model_device
    from shears.evaluate.perplexity import perplexity

    ids = heldout_ids(
        tokenizer,
        spec.path,
        cfg.ppl_tokens,
        spec.fields.get("text", "text"),
        spec.config,
        spec.split,  # used by dataset sources only
    )
    ppl = perplexity(
        model,
        tokenizer,
        ids,
        cfg.ppl_seqlen,
        cfg.ppl_stride,
        cfg.batch_size,
        model_device(model),
        parallel=dp,
    )
    return {"perplexity": ppl, "tokens": int(ids.numel())}, []


def _lmeval_task(model, tokenizer, spec, examples, cfg, style, dp) -> tuple[Metrics, Records]:
    """One lm-evaluation-harness task on the in-memory model; its primary metric as accuracy
    (not shared between data-parallel processes: each runs the whole task, with the same
    result)."""
    from shears.evaluate.lmeval import primary_metric, run_lmeval

    res = run_lmeval(
        model,
        tokenizer,
        [spec.path],
        cfg.lmeval_include_path,
        cfg.batch_size,
        cfg.limit,
        cfg.num_fewshot,
        cfg.seed,
    ).get(spec.path, {})
    prim = primary_metric(res)
    if prim is not None:
        res = {"accuracy": prim[1], "metric": prim[0], **res}
    return res, []


TaskRunner = Callable[..., tuple[Metrics, Records]]
TASK_RUNNERS: dict[str, TaskRunner] = {
    "math": _math_task,
    "letter": _math_task,
    "mc_gen": _mc_gen_task,
    "mc": _mc_task,
    "ppl": _ppl_task,
    "lmeval": _lmeval_task,
}


def run_task(
    model,
    tokenizer,
    spec: TaskSpec,
    examples: list[dict],
    cfg: EvalConfig,
    style: str,
    parallel: DataParallel = SINGLE,
) -> tuple[Metrics, Records]:
    """Metrics and prediction records of one task (the same on every process of ``parallel``)."""
    task_runner = TASK_RUNNERS.get(spec.kind)
    if task_runner is None:  # pragma: no cover - parse_task admits only the kinds above
        raise ShearsError(f"task kind {spec.kind!r} is not known")
    return task_runner(model, tokenizer, spec, examples, cfg, style, parallel)


def eval_autocast(model: nn.Module, precision: str) -> torch.dtype | None:
    """The autocast dtype of evaluating ``model`` at ``precision`` (``"eval"`` policy of
    :mod:`shears.precision`); None for a deployed IR, which computes in its own runtime."""
    param = next(model.parameters(), None)
    if param is None or hasattr(model, "parameter_counts"):
        return None
    return autocast_dtype(precision, param.device, "eval", param.dtype)


# ---------------------------------------------------------------------------- all tasks


def evaluate_model(
    model: nn.Module,
    tokenizer,
    tasks: list[str | dict | TaskSpec] | None = None,
    cfg: EvalConfig | None = None,
    data: dict[str, list[dict]] | None = None,
    prompt_style: str | None = None,
    parallel: DataParallel = SINGLE,
) -> dict[str, Any]:
    """Evaluate an in-memory model on ``tasks`` (default: ``cfg.tasks``).

    ``data``: examples already prepared by :func:`prepare_tasks` (else loaded here, all checked
    before the first generation). Returns ``{"tasks": {name: metrics}, "mean_accuracy": float |
    None, "predictions": {name: [records]}, "prompt_style": str, "time_s": float, "precision":
    str, "autocast": str}``; the mean is unweighted over the tasks that report an accuracy
    (perplexity does not). ``parallel``: the processes sharing the work (each gets it all back).
    """
    cfg = cfg or EvalConfig(tasks=list(tasks) if tasks else ["gsm_symbolic"])
    style = prompt_style or cfg.prompt_style or "alpaca"
    specs = [parse_task(t) for t in (tasks if tasks is not None else cfg.tasks)]
    check_eval_context(cfg, specs, max_positions(model))
    if data is None:
        data = prepare_tasks(specs, cfg)
    start = time.perf_counter()
    dtype = eval_autocast(model, cfg.precision)
    device = next(model.parameters()).device
    results: dict[str, dict] = {}
    predictions: dict[str, list[dict]] = {}
    shown_bar = cfg.progress and parallel.is_main and len(specs) > 1
    for spec in tqdm(specs, desc="tasks", disable=not shown_bar):
        t0 = time.perf_counter()
        with autocast(dtype, device):
            metrics, preds = run_task(model, tokenizer, spec, data[spec.name], cfg, style, parallel)
        metrics = {"kind": spec.kind, **metrics, "time_s": round(time.perf_counter() - t0, 3)}
        results[spec.name] = metrics
        predictions[spec.name] = preds
        shown = {k: v for k, v in metrics.items() if k in ("accuracy", "perplexity", "count")}
        logger.info("%s: %s", spec.name, shown)
    accs = [m["accuracy"] for m in results.values() if isinstance(m.get("accuracy"), float)]
    return {
        "tasks": results,
        "mean_accuracy": sum(accs) / len(accs) if accs else None,
        "num_tasks_in_mean": len(accs),
        "predictions": predictions,
        "prompt_style": style,
        "time_s": round(time.perf_counter() - start, 3),
        "precision": cfg.precision,
        "autocast": describe(dtype),
    }
