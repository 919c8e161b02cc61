"""``run`` (what ``shears generate`` runs): check -> load -> generate -> write.

:func:`check` verifies everything before the model loads: the prompts, the output folder, the
model spec, adapter and sub-adapter and prompt style (:func:`shears.evaluate.run.check_model`, as
``shears eval`` does), ``max_new_tokens`` against the model's positions, and that a deployed IR
is not asked to sample. The model loads with ``shears eval``'s loader
(:func:`shears.evaluate.run.load`); the prompts go through its batched generation
(:func:`shears.evaluate.generate.generate`, left padding, KV cache) under its precision policy, so
a greedy completion is the answer ``shears eval`` would score. With ``output_dir``, the
completions, the results and the config are written atomically (:mod:`shears.outputs`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from shears.artifacts import (
    GENERATE_COMPLETIONS,
    GENERATE_CONFIG,
    GENERATE_RESULTS,
    config_record,
)
from shears.errors import ShearsError
from shears.evaluate.generate import GenerationResult
from shears.evaluate.run import ModelPlan, check_model, load, sub_adapter_used
from shears.generate.config import GenerateConfig
from shears.generate.prompts import prompt_examples

logger = logging.getLogger(__name__)

STAGE = "generate"


@dataclass
class GeneratePlan:
    """What :func:`check` established before the model is loaded."""

    model: ModelPlan
    examples: list[dict[str, str]]  # {"instruction", "input"}
    out: Path | None  # None: print only


def _inputs(cfg: GenerateConfig) -> list[str | None]:
    return [cfg.model, cfg.adapter, cfg.sub_adapter, cfg.prompts_file]


def check(cfg: GenerateConfig) -> GeneratePlan:
    """Everything checkable without the model (a ShearsError on bad input); reads the prompts."""
    from shears.context import check_length
    from shears.deploy.model import is_deployed
    from shears.models import max_positions
    from shears.outputs import check_output

    out = None
    if cfg.output_dir:
        out = check_output(cfg.output_dir, STAGE, overwrite=cfg.overwrite, inputs=_inputs(cfg))
    examples = prompt_examples(cfg.prompts, cfg.prompts_file)
    plan = check_model(cfg, "used")
    if cfg.sampling and is_deployed(cfg.model):
        raise ShearsError(
            f"--temperature {cfg.temperature}: the deployed model {cfg.model!r} generates "
            "greedily only; drop --temperature / --top-p"
        )
    limit = max_positions(cfg.model, cfg.gguf_file)
    check_length(cfg.max_new_tokens, "--max-new-tokens", limit, reserve=1)
    return GeneratePlan(plan, examples, out)


def complete(
    model: nn.Module, tokenizer: Any, cfg: GenerateConfig, examples: list[dict], style: str
) -> tuple[list[dict[str, Any]], GenerationResult]:
    """``(records, result)``: the completion of each example (cut at a new Alpaca section, as
    ``shears eval`` scores it) with its new tokens and its batch's time and tokens/s."""
    from shears.evaluate.extract import clean_output
    from shears.evaluate.generate import build_prompts, default_stop_strings, generate, model_device
    from shears.evaluate.suite import eval_autocast
    from shears.precision import autocast
    from shears.utils import set_seed

    prompts = build_prompts(examples, style, tokenizer)
    set_seed(cfg.seed)
    with autocast(eval_autocast(model, cfg.precision), model_device(model)):
        res = generate(
            model, tokenizer, prompts, style, cfg.batch_size, cfg.max_new_tokens,
            default_stop_strings(style), temperature=cfg.temperature, top_p=cfg.top_p,
        )  # fmt: skip
    per = (res.texts, res.per_example_tokens, res.per_example_time_s)
    rows = zip(examples, prompts, *per, strict=True)
    records = [
        {"index": i, **ex, "prompt": prompt, "completion": clean_output(text, style),
         **_timing(n, secs)}
        for i, (ex, prompt, text, n, secs) in enumerate(rows)
    ]  # fmt: skip
    return records, res


def _timing(new_tokens: int, secs: float) -> dict[str, Any]:
    """A completion's new tokens, the seconds of its batch, and its tokens per second there."""
    rate = round(new_tokens / secs, 2) if secs > 0 else None
    return {"new_tokens": new_tokens, "batch_time_s": round(secs, 4), "tokens_per_s": rate}


def _result(
    cfg: GenerateConfig, plan: GeneratePlan, model: nn.Module, counts: dict, gen: dict
) -> dict[str, Any]:
    """What ``generate_results.json`` holds (the completions are in ``completions.jsonl``)."""
    from shears.evaluate.suite import eval_autocast
    from shears.precision import describe
    from shears.utils import package_versions, peak_memory

    sub = sub_adapter_used(plan.model)
    param = next(model.parameters())
    return {
        "model": cfg.model,
        "adapter": cfg.adapter,
        "adapter_kind": plan.model.kind,
        "sub_adapter": None if sub is None else vars(sub),
        "prompt_style": plan.model.style,
        "decoding": "sampling" if cfg.sampling else "greedy",
        **gen,
        "parameters": counts,
        "settings": config_record(cfg),
        "device": str(param.device),
        "dtype": str(param.dtype).replace("torch.", ""),
        "precision": cfg.precision,
        "autocast": describe(eval_autocast(model, cfg.precision)),
        "memory": peak_memory(),
        "versions": package_versions("shears", "torch", "transformers", python=True),
    }


def write_results(
    cfg: GenerateConfig, out: Path, records: list[dict], result: dict[str, Any]
) -> None:
    """Write ``completions.jsonl``, ``generate_config.json`` and ``generate_results.json`` (last)
    into ``out``, atomically (a failure leaves ``out`` as it was)."""
    from shears.outputs import atomic_output
    from shears.utils import atomic_write_json, atomic_write_text

    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    with atomic_output(out, STAGE, overwrite=cfg.overwrite, inputs=_inputs(cfg)) as tmp:
        atomic_write_text(tmp / GENERATE_COMPLETIONS, lines)
        atomic_write_json(tmp / GENERATE_CONFIG, config_record(cfg))
        atomic_write_json(tmp / GENERATE_RESULTS, result)


def run(cfg: GenerateConfig) -> dict[str, Any]:
    """Generate a completion of every prompt; write them with ``cfg.output_dir``; return the
    results (``generate_results.json``'s content plus ``completions``, the records)."""
    t_start = time.perf_counter()
    plan = check(cfg)
    model, tok, counts = load(cfg, plan.model)
    t0 = time.perf_counter()
    records, res = complete(model, tok, cfg, plan.examples, plan.model.style)
    secs = time.perf_counter() - t0
    gen = {
        "num_prompts": len(records),
        "max_new_tokens": cfg.max_new_tokens,
        "new_tokens": res.new_tokens,
        "truncated_prompts": res.truncated_prompts,
        "generate_time_s": round(secs, 3),
        "tokens_per_s": round(res.new_tokens / secs, 2) if secs > 0 else None,
        "total_time_s": round(time.perf_counter() - t_start, 3),
    }
    result = _result(cfg, plan, model, counts, gen)
    logger.info("generated %d tokens for %d prompt(s) in %.2f s (%s tokens/s)",
                res.new_tokens, len(records), secs, gen["tokens_per_s"])  # fmt: skip
    if plan.out is not None:
        write_results(cfg, plan.out, records, result)
        logger.info("wrote %s", plan.out / GENERATE_RESULTS)
    return {**result, "completions": records}
