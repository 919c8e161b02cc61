"""``evaluate_model`` (library API) and ``run_eval`` (what ``shears eval`` runs).

``run_eval`` checks everything it can before loading the model (tasks and their data, the output
folder, the sub-adapter config against the adapter's search space), then loads the model and the
adapter, counts parameters at the active sub-adapter rank, runs the tasks and writes
``eval_results.json`` and ``predictions.jsonl`` atomically.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from shears.artifacts import EVAL_PREDICTIONS, EVAL_RESULTS, read_train_settings
from shears.config import field, to_dict
from shears.context import check_eval_context
from shears.data.prompts import PROMPT_STYLES
from shears.errors import ShearsError
from shears.evaluate.tasks import TaskSpec, load_task_data, parse_task
from shears.inputs import read_json_file
from shears.models import max_positions

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Settings of ``shears eval``."""

    model: str = field("smollm2-135m", help="model: named default, local folder, .gguf or hub id")
    gguf_file: str | None = field(None, help="GGUF file name inside a model folder")
    adapter: str | None = field(
        None, help="Shears super-adapter folder, or an exported stock-PEFT adapter folder"
    )
    sub_adapter: str = field(
        "heuristic",
        help="active sub-adapter of a super-adapter: heuristic, max, min, a JSON file of "
        "{group: rank} (or a search result holding one) or inline JSON",
    )
    tasks: list[Any] = field(
        ["gsm_symbolic", "gsm_symbolic_mc"],
        help="tasks: presets (gsm_symbolic, gsm_symbolic_mc, ppl, gsm8k...), <kind>:<file.json>, "
        "<kind>:gym:<generator>, <kind>:hf:<dataset>[:<config>], lmeval:<task>; kinds: math, "
        "letter, mc, mc_gen, ppl (mc: a question + choice longer than the model's maximum "
        "positions loses question tokens from the left, with a warning)",
    )
    output_dir: str = field("runs/eval", help="where eval_results.json and predictions.jsonl go")
    overwrite: bool = field(False, help="replace results already in --output-dir")
    prompt_style: str | None = field(
        None,
        help="alpaca or chat; must match training (default: the adapter's train_config.json, "
        "else alpaca)",
    )
    max_new_tokens: int = field(
        256,
        help="generated tokens per answer (math, mc_gen); must be below the model's maximum "
        "positions, and a prompt longer than the rest is cut from the left (a warning counts "
        "them)",
    )
    batch_size: int = field(16, help="prompts per generation / scoring batch")
    limit: int | None = field(None, help="examples per task (default: all)")
    gym_size: int = field(200, help="problems generated for reasoning-gym tasks without --limit")
    ppl_seqlen: int = field(
        512, help="perplexity window length (tokens), at most the model's maximum positions"
    )
    ppl_stride: int | None = field(None, help="perplexity window stride (default: seqlen)")
    ppl_tokens: int = field(
        16384, help="held-out tokens scored for perplexity", aliases=("ppl_max_tokens",)
    )
    lmeval_include_path: str | None = field(
        None, help="folder of extra lm-eval task YAMLs (local tasks)"
    )
    num_fewshot: int | None = field(None, help="few-shot examples for lm-eval tasks")
    seed: int = field(0, help="seed (lm-eval sampling; generation is greedy)")
    device: str = field("auto", help="auto, cpu, cuda, cuda:N")
    dtype: str = field("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16...")
    progress: bool = field(True, help="show progress bars")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ShearsError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ShearsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ShearsError(f"limit must be >= 1, got {self.limit}")
        if self.gym_size < 1:
            raise ShearsError(f"gym_size must be >= 1, got {self.gym_size}")
        if self.ppl_seqlen < 2 or (self.ppl_stride is not None and self.ppl_stride < 1):
            raise ShearsError("ppl_seqlen must be >= 2 and ppl_stride >= 1")
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise ShearsError(
                f"prompt_style {self.prompt_style!r} is not known; allowed: {', '.join(PROMPT_STYLES)}"
            )
        if not self.tasks:
            raise ShearsError("no tasks given; e.g. --tasks gsm_symbolic,gsm_symbolic_mc")
        specs = [parse_task(t) for t in self.tasks]
        names = [s.name for s in specs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ShearsError(f"two tasks are both named {dup!r}; give one a 'name'")

    def task_specs(self) -> list[TaskSpec]:
        return [parse_task(t) for t in self.tasks]


# ---------------------------------------------------------------------------- library API


def prepare_tasks(specs: list[TaskSpec], cfg: EvalConfig) -> dict[str, list[dict]]:
    """Load and check the data of every task (no model needed): ``{task name: examples}``."""
    lmeval = [s.path for s in specs if s.kind == "lmeval"]
    if lmeval:
        from shears.evaluate.lmeval import check_lmeval_tasks

        check_lmeval_tasks(lmeval, cfg.lmeval_include_path)
    return {s.name: load_task_data(s, cfg.limit, cfg.gym_size) for s in specs}


def _question(e: dict) -> str:
    return e["instruction"] + (f"\n\n{e['input']}" if e.get("input") else "")


def _run_task(model, tokenizer, spec: TaskSpec, examples: list[dict], cfg: EvalConfig, style: str):
    """Metrics and prediction records of one task."""
    from shears.evaluate.choice import choice_metrics, choice_scores, generation_choice_accuracy
    from shears.evaluate.math import math_accuracy

    bs, progress = cfg.batch_size, cfg.progress
    if spec.kind in ("math", "letter"):
        kind = "number" if spec.kind == "math" else "letter"
        acc, recs = math_accuracy(
            model, tokenizer, examples, style, bs, cfg.max_new_tokens, kind, progress
        )
        preds = [
            {"input": _question(e), **r, "label": e["answer"]}
            for e, r in zip(examples, recs, strict=True)
        ]
        return {"accuracy": acc, "count": len(examples)}, preds
    if spec.kind == "mc_gen":
        acc, recs = generation_choice_accuracy(
            model, tokenizer, examples, style, bs, cfg.max_new_tokens, progress
        )
        preds = [
            {"input": _question(e), **r, "label": e["answer"]}
            for e, r in zip(examples, recs, strict=True)
        ]
        return {"accuracy": acc, "count": len(examples)}, preds
    if spec.kind == "mc":
        scores = choice_scores(model, tokenizer, examples, style, bs, progress)
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
    if spec.kind == "ppl":
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
            model, tokenizer, ids, cfg.ppl_seqlen, cfg.ppl_stride, bs, model_device(model)
        )
        return {"perplexity": ppl, "tokens": int(ids.numel())}, []
    if spec.kind == "lmeval":
        from shears.evaluate.lmeval import primary_metric, run_lmeval

        res = run_lmeval(
            model,
            tokenizer,
            [spec.path],
            cfg.lmeval_include_path,
            bs,
            cfg.limit,
            cfg.num_fewshot,
            cfg.seed,
        ).get(spec.path, {})
        prim = primary_metric(res)
        if prim is not None:
            res = {"accuracy": prim[1], "metric": prim[0], **res}
        return res, []
    raise ShearsError(f"task kind {spec.kind!r} is not known")  # pragma: no cover


def evaluate_model(
    model: nn.Module,
    tokenizer,
    tasks: list[str | dict | TaskSpec] | None = None,
    cfg: EvalConfig | None = None,
    data: dict[str, list[dict]] | None = None,
    prompt_style: str | None = None,
) -> dict[str, Any]:
    """Evaluate an in-memory model on ``tasks`` (default: ``cfg.tasks``).

    ``data``: examples already prepared by :func:`prepare_tasks` (else loaded here, all checked
    before the first generation). Returns ``{"tasks": {name: metrics}, "mean_accuracy": float |
    None, "predictions": {name: [records]}, "prompt_style": str, "time_s": float}``; the mean is
    unweighted over the tasks that report an accuracy (perplexity does not).
    """
    cfg = cfg or EvalConfig(tasks=list(tasks) if tasks else ["gsm_symbolic"])
    style = prompt_style or cfg.prompt_style or "alpaca"
    specs = [parse_task(t) for t in (tasks if tasks is not None else cfg.tasks)]
    check_eval_context(cfg, specs, max_positions(model))
    if data is None:
        data = prepare_tasks(specs, cfg)
    start = time.perf_counter()
    results: dict[str, dict] = {}
    predictions: dict[str, list[dict]] = {}
    for spec in tqdm(specs, desc="tasks", disable=not cfg.progress or len(specs) < 2):
        t0 = time.perf_counter()
        metrics, preds = _run_task(model, tokenizer, spec, data[spec.name], cfg, style)
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
    }


# ---------------------------------------------------------------------------- adapters


def adapter_kind(path: str) -> str:
    """``super`` (Shears super-adapter folder) or ``peft`` (stock PEFT adapter folder)."""
    from shears.adapters.io import META

    d = Path(path)
    if not d.is_dir():
        raise ShearsError(f"adapter folder {path!r} does not exist")
    if (d / META).is_file():
        return "super"
    if (d / "adapter_config.json").is_file():
        read_json_file(d / "adapter_config.json", "PEFT adapter config", expect=dict)
        return "peft"
    raise ShearsError(
        f"{path!r} is neither a Shears super-adapter ({META}) nor a PEFT adapter "
        "(adapter_config.json)"
    )


def find_prompt_style(adapter_dir: str | None) -> str | None:
    """``prompt_style`` of the training run of the adapter (its ``train_config.json``)."""
    return read_train_settings(adapter_dir).prompt_style


def attach_adapter(model: nn.Module, cfg: EvalConfig, sub_config: dict | None) -> nn.Module:
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


# ---------------------------------------------------------------------------- run


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg.model`` (+ adapter) on ``cfg.tasks``; write results; return them."""
    import platform

    import torch
    import transformers

    from shears import __version__
    from shears.models import load_model, validate_model_spec
    from shears.outputs import check_output, claim
    from shears.sparsity import count_nonzero_parameters
    from shears.utils import atomic_write_json, atomic_write_text, peak_memory

    t_start = time.perf_counter()
    reads = [cfg.model, cfg.adapter, cfg.sub_adapter, *(s.path for s in cfg.task_specs())]
    out = check_output(cfg.output_dir, "eval", overwrite=cfg.overwrite, inputs=reads)
    validate_model_spec(cfg.model, cfg.gguf_file)
    # --- everything checkable without the model, before loading it
    sub_label, sub_config, space = None, None, None
    kind = adapter_kind(cfg.adapter) if cfg.adapter else None
    if kind is not None:
        if kind == "super":
            from shears.adapters.io import SuperAdapter, warn_if_other_base
            from shears.adapters.select import EVAL_SUB_ADAPTER, resolve_sub_adapter

            space = SuperAdapter.read(cfg.adapter).space
            choice = resolve_sub_adapter(cfg.sub_adapter, space, EVAL_SUB_ADAPTER)
            sub_label, sub_config = choice.label, choice.config
            warn_if_other_base(cfg.adapter, cfg.model, "evaluated")
        elif cfg.sub_adapter not in ("heuristic",):
            logger.warning("--sub-adapter is ignored for a PEFT adapter (its ranks are fixed)")
    style = cfg.prompt_style or find_prompt_style(cfg.adapter) or "alpaca"
    specs = cfg.task_specs()
    check_eval_context(cfg, specs, max_positions(cfg.model, cfg.gguf_file))  # before the data
    data = prepare_tasks(specs, cfg)
    # --- model
    logger.info("loading %s", cfg.model)
    model, tok = load_model(cfg.model, cfg.dtype, cfg.device, cfg.gguf_file)
    if cfg.adapter:
        model = attach_adapter(model, cfg, sub_config)
    counts = count_nonzero_parameters(model)
    logger.info(
        "evaluating %d non-zero of %d parameters (sparsity %.2f%%), prompt style %s",
        counts["nonzero_parameters"],
        counts["parameters"],
        100 * counts["sparsity"],
        style,
    )
    if kind == "super":
        # the sub-adapter is fixed from here on: fold it into the base weights (exact: the same
        # delta, masked when the adapter is mask-aware) so generation runs one matmul per layer
        from shears.adapters.elastic_lora import elastic_layers

        for layer in elastic_layers(model).values():
            layer.merge()
    res = evaluate_model(model, tok, specs, cfg, data=data, prompt_style=style)
    predictions = res.pop("predictions")
    results = {
        "model": cfg.model,
        "adapter": cfg.adapter,
        "adapter_kind": kind,
        "sub_adapter": (
            {
                "name": sub_label,
                "config": sub_config,
                "adapter_parameters": space.adapter_parameters(sub_config),
            }
            if sub_config is not None
            else None
        ),
        **res,
        "parameters": counts,
        "settings": to_dict(cfg),
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "total_time_s": round(time.perf_counter() - t_start, 3),
        "memory": peak_memory(),
        "versions": {
            "shears": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    lines = [
        json.dumps({"task": name, "index": i, **rec}, default=str)
        for name, recs in predictions.items()
        for i, rec in enumerate(recs)
    ]
    claim(out, "eval", [EVAL_PREDICTIONS, EVAL_RESULTS])
    atomic_write_text(out / EVAL_PREDICTIONS, "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_json(out / EVAL_RESULTS, results)
    logger.info(
        "mean accuracy %s over %d task(s); wrote %s",
        "n/a" if res["mean_accuracy"] is None else f"{res['mean_accuracy']:.4f}",
        res["num_tasks_in_mean"],
        out / EVAL_RESULTS,
    )
    return results
