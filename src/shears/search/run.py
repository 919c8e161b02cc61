"""``run_search``: load a model and its super-adapter, search, write results, log and plots.

Output folder: ``search_results.json`` (algorithm, objective, budget, every evaluated config with
its score and adapter size, ``best`` = {config, score, adapter_parameters}, time),
``search_log.jsonl`` (one line per evaluation: a killed search resumes from it),
``search_progress.png`` and ``search_ranks.png``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from shears.adapters.search_space import Config, SearchSpace
from shears.config import to_dict
from shears.errors import ShearsError
from shears.search.algorithms import run_algorithm
from shears.search.config import SearchConfig
from shears.search.evaluator import CachedEvaluator
from shears.search.hill_climb import SearchOutcome
from shears.utils import atomic_write_json, peak_memory

logger = logging.getLogger(__name__)

RESULTS = "search_results.json"
LOG = "search_log.jsonl"
PROGRESS_PNG = "search_progress.png"
RANKS_PNG = "search_ranks.png"
OUR_FILES = (RESULTS, LOG, PROGRESS_PNG, RANKS_PNG)


# ---------------------------------------------------------------------------- checks


def check_space_fits(space: SearchSpace, adapter_space: SearchSpace, where: str = "") -> None:
    """A search space must only name the adapter's modules, with widths the adapter holds."""
    known = set(adapter_space.modules)
    for g in space.groups:
        for m in g.modules:
            if m not in known:
                raise ShearsError(
                    f"search space{where} does not match the adapter: group {g.name!r} names "
                    f"module {m!r}, which has no adapter (adapter modules look like "
                    f"{adapter_space.modules[0]!r})"
                )
        if g.widths[0] > adapter_space.r_max:
            raise ShearsError(
                f"search space{where} does not match the adapter: group {g.name!r} has width "
                f"{g.widths[0]} > the adapter's r_max {adapter_space.r_max}"
            )
    missing = known - set(space.modules)
    if missing:
        logger.warning(
            "%d adapter modules are in no group of the search space; they stay at r_max",
            len(missing),
        )


def resolve_start(spec: str, space: SearchSpace) -> Config:
    """``heuristic`` | ``max`` | ``min`` | a JSON file of ``{group: rank}`` (or ``{"config": ...}``
    / a ``search_results.json`` whose ``best.config`` is used)."""
    if spec in ("heuristic", "max", "maximal", "min", "minimal"):
        return space.named_config(spec)
    p = Path(spec)
    if not p.is_file():
        raise ShearsError(f"--start {spec!r} is neither heuristic/max/min nor a JSON file")
    data = json.loads(p.read_text())
    if isinstance(data, dict) and isinstance(data.get("best"), dict):
        data = data["best"]
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    return space.validate(data)


def prepare_output(cfg: SearchConfig) -> Path:
    """Fail early on an occupied output folder; with --overwrite drop only our own files."""
    out = cfg.output_path
    if out.exists() and not out.is_dir():
        raise ShearsError(f"output_dir {str(out)!r} is a file")
    occupied = out.is_dir() and any(out.iterdir())
    if occupied and not (cfg.overwrite or cfg.resume):
        raise ShearsError(
            f"output folder {str(out)!r} already exists; pass --overwrite to replace it or "
            "--resume to continue its search"
        )
    if cfg.overwrite:
        for name in OUR_FILES:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def space_digest(space: SearchSpace) -> str:
    text = json.dumps([[g.name, g.modules, g.widths] for g in space.groups])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------- results


def build_results(
    cfg: SearchConfig | None,
    evaluator: CachedEvaluator,
    outcome: SearchOutcome,
    elapsed: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``search_results.json`` payload (pure; no I/O)."""
    space = evaluator.space
    best = outcome.best
    history = [e.to_dict() for e in evaluator.history]
    return {
        "algorithm": cfg.algorithm if cfg else None,
        "objective": evaluator.objective.name,
        "maximize": evaluator.maximize,
        "budget": evaluator.budget,
        "evaluations": evaluator.n_evaluations,
        "objective_calls": evaluator.objective_calls,
        "resumed_evaluations": sum(e.resumed for e in evaluator.history),
        "stop_reason": outcome.stop_reason,
        "time_s": round(elapsed, 2),
        "best": None
        if best is None
        else {
            "config": best.config,
            "score": None if math.isnan(best.score) else best.score,
            "adapter_parameters": best.adapter_parameters,
            "index": best.index,
        },
        "space": {
            "groups": len(space.groups),
            "r_max": space.r_max,
            "max_adapter_parameters": space.adapter_parameters(space.maximal()),
            "min_adapter_parameters": space.adapter_parameters(space.minimal()),
        },
        "trajectory": outcome.trajectory,
        **outcome.extra,
        "history": history,
        **(extra or {}),
        "settings": to_dict(cfg) if cfg else None,
    }


# ---------------------------------------------------------------------------- run


def build_objective(cfg: SearchConfig, model, tokenizer, layers, space, settings, examples):
    if cfg.objective == "loss":
        from shears.search.answer_loss import AnswerLossObjective, encode_validation

        batches = encode_validation(
            tokenizer, examples, settings["prompt_style"], settings["cutoff_len"], cfg.batch_size
        )
        return AnswerLossObjective(
            model, layers, space, batches, cfg.reuse_prefix, cfg.gather_logits
        )
    if cfg.objective == "math":
        from shears.search.objectives import MathAccuracyObjective

        return MathAccuracyObjective(
            model,
            tokenizer,
            layers,
            space,
            examples,
            settings["prompt_style"],
            cfg.batch_size,
            cfg.max_new_tokens,
        )
    from shears.search.objectives import ChoiceAccuracyObjective

    return ChoiceAccuracyObjective(
        model,
        tokenizer,
        layers,
        space,
        examples,
        settings["prompt_style"],
        cfg.batch_size,
        cfg.choice_metric,
    )


def run_search(cfg: SearchConfig) -> dict[str, Any]:
    """Search the super-adapter ``cfg.adapter`` for a sub-adapter; returns the results dict
    (also written to ``<output_dir>/search_results.json``). Bad input fails before the model
    loads."""
    from shears.adapters.io import load_super_adapter, read_super_adapter_meta
    from shears.models import load_model
    from shears.search.data import (
        load_validation_examples,
        read_train_config,
        resolve_data_settings,
    )

    t0 = time.perf_counter()
    if not Path(cfg.adapter).is_dir():
        raise ShearsError(f"adapter folder {cfg.adapter!r} does not exist")
    _, adapter_space = read_super_adapter_meta(cfg.adapter)
    space = SearchSpace.load(cfg.space) if cfg.space else adapter_space
    if cfg.space:
        check_space_fits(space, adapter_space, f" {cfg.space!r}")
    start = resolve_start(cfg.start, space)
    train = read_train_config(cfg.adapter)
    settings = resolve_data_settings(cfg, train)
    need = {"loss": ("output",), "math": ("answer",), "choice": ("choices",)}[cfg.objective]
    examples = load_validation_examples(settings, need)
    model_spec = cfg.model or train.get("model") or "smollm2-135m"
    out = prepare_output(cfg)

    model, tok = load_model(model_spec, cfg.dtype, cfg.device)
    layers, _ = load_super_adapter(model, cfg.adapter, dropout=0.0)
    model.eval()
    objective = build_objective(cfg, model, tok, layers, space, settings, examples)
    fingerprint = {
        "adapter": str(Path(cfg.adapter).resolve()),
        "model": model_spec,
        "objective": objective.name,
        "space": space_digest(space),
        "dtype": cfg.dtype,
        **{k: v for k, v in settings.items() if k != "from_training"},
        "batch_size": cfg.batch_size if cfg.objective != "loss" else None,
        "max_new_tokens": cfg.max_new_tokens if cfg.objective == "math" else None,
    }
    evaluator = CachedEvaluator(
        space, objective, cfg.budget, out / LOG, resume=cfg.resume, fingerprint=fingerprint
    )
    logger.info(
        "searching %d groups (%s) with %s on %s, budget %d",
        len(space.groups),
        "widths " + str(space.groups[0].widths),
        cfg.algorithm,
        objective.name,
        cfg.budget,
    )
    outcome = run_algorithm(
        evaluator,
        cfg.algorithm,
        start=start,
        max_turns=cfg.max_turns,
        patience=cfg.patience,
        screen_top_k=cfg.screen_top_k,
        population=cfg.population,
        mutation_prob=cfg.mutation_prob,
        two_objectives=cfg.two_objectives,
        seed=cfg.seed,
        score_reference=cfg.score_best,
    )
    extra: dict[str, Any] = {
        "model": model_spec,
        "adapter": cfg.adapter,
        "data": {k: v for k, v in settings.items() if k != "from_training"},
        "validation_examples": len(examples),
        **peak_memory(),
    }
    if hasattr(objective, "blocks_run"):
        n = max(1, getattr(objective, "n_blocks", 1))
        extra["compute"] = {
            "decoder_blocks_run": objective.blocks_run,
            "full_forward_equivalents": round(objective.blocks_run / n, 2),
            "objective_calls": objective.calls,
        }
    results = build_results(cfg, evaluator, outcome, time.perf_counter() - t0, extra)
    atomic_write_json(out / RESULTS, results)
    if cfg.plots:
        from shears.search.plots import plot_progress, plot_ranks

        plot_progress(results["history"], objective.name, evaluator.maximize, out / PROGRESS_PNG)
        if results["best"]:
            plot_ranks(
                results["best"]["config"], {g.name: g.widths for g in space.groups}, out / RANKS_PNG
            )
    logger.info(
        "best %s=%s with %d adapter parameters after %d evaluations (%s); wrote %s",
        objective.name,
        results["best"]["score"] if results["best"] else None,
        results["best"]["adapter_parameters"] if results["best"] else 0,
        evaluator.n_evaluations,
        outcome.stop_reason,
        out / RESULTS,
    )
    return results
