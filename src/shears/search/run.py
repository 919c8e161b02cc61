"""``run_search``: load a model and its super-adapter, search, write results, log and plots.

Output folder: ``search_results.json`` (algorithm, objective, budget, every evaluated config with
its score and adapter size, ``best`` = {config, score, adapter_parameters}, time),
``search_log.jsonl`` (one line per evaluation: a killed search resumes from it),
``search_progress.png`` and ``search_ranks.png``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from shears.adapters.search_space import SearchSpace
from shears.adapters.select import SEARCH_START, resolve_sub_adapter
from shears.artifacts import (
    SEARCH_LOG,
    SEARCH_PLOT,
    SEARCH_RANKS_PLOT,
    SEARCH_RESULTS,
    read_train_settings,
)
from shears.config import absolute_spec, to_dict
from shears.context import check_search_context
from shears.errors import ShearsError
from shears.models import max_positions
from shears.outputs import (
    MARKER,
    check_output,
    claim,
    remove_own,
    swap_in,
    temp_sibling,
    write_marker,
)
from shears.search.algorithms import run_algorithm
from shears.search.config import SearchConfig
from shears.search.evaluator import CachedEvaluator
from shears.search.hill_climb import SearchOutcome
from shears.utils import atomic_write_json, peak_memory

logger = logging.getLogger(__name__)

OUR_FILES = (SEARCH_RESULTS, SEARCH_LOG, SEARCH_PLOT, SEARCH_RANKS_PLOT)


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


def search_inputs(cfg: SearchConfig) -> list[str | None]:
    """What ``shears search`` reads: the output folder must not overlap any of it."""
    return [cfg.adapter, cfg.model, cfg.data, cfg.space, cfg.start]


def prepare_output(cfg: SearchConfig) -> tuple[Path, Path]:
    """Check the output folder before any work; return ``(folder, folder to write in now)``.

    A new or resumed search writes in place (its log makes it resumable); ``--overwrite`` of an
    earlier search writes beside it and replaces it only when done (:func:`finish_output`)."""
    out = check_output(
        cfg.output_dir,
        "search",
        overwrite=cfg.overwrite,
        resume=cfg.resume,
        inputs=search_inputs(cfg),
    )
    if cfg.overwrite and out.is_dir() and any(e.name != MARKER for e in out.iterdir()):
        return out, temp_sibling(out)
    claim(out, "search", OUR_FILES)
    return out, out


def finish_output(out: Path, work: Path) -> None:
    """Swap a replacement search (written in ``work``) in for the earlier one."""
    if work != out:
        write_marker(work, "search", OUR_FILES)
        swap_in(work, out, "search")


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
    from shears.adapters.io import SuperAdapter, warn_if_other_base
    from shears.search.data import load_validation_examples, resolve_data_settings

    t0 = time.perf_counter()
    if not Path(cfg.adapter).is_dir():
        raise ShearsError(f"adapter folder {cfg.adapter!r} does not exist")
    saved = SuperAdapter.read(cfg.adapter)
    adapter_space = saved.space
    warn_if_other_base(cfg.adapter, cfg.model, "searched")
    space = SearchSpace.load(cfg.space, "--space file") if cfg.space else adapter_space
    if cfg.space:
        check_space_fits(space, adapter_space, f" {cfg.space!r}")
    start = resolve_sub_adapter(cfg.start, space, SEARCH_START).config
    check_output(  # the output folder first: a refusal costs nothing (prepare_output claims it)
        cfg.output_dir,
        "search",
        overwrite=cfg.overwrite,
        resume=cfg.resume,
        inputs=search_inputs(cfg),
    )
    train = read_train_settings(cfg.adapter)
    settings = resolve_data_settings(cfg, train)
    model_spec = cfg.model or saved.base_spec or train.path("model") or "smollm2-135m"
    check_search_context(cfg, settings, max_positions(model_spec))  # before reading the data
    need = {"loss": ("output",), "math": ("answer",), "choice": ("choices",)}[cfg.objective]
    examples = load_validation_examples(settings, need)
    new_folder = not cfg.output_path.exists()
    out, work = prepare_output(cfg)
    try:
        results = _search(cfg, model_spec, space, start, settings, examples, work, t0)
    except BaseException:
        if work != out:
            shutil.rmtree(work, ignore_errors=True)
        elif new_folder and not (out / SEARCH_LOG).is_file():
            remove_own(out, "search")  # failed before its first evaluation: nothing to keep
        raise
    finish_output(out, work)
    logger.info("wrote %s", out / SEARCH_RESULTS)
    return results


def _search(cfg, model_spec, space, start, settings, examples, out: Path, t0: float) -> dict:
    """Load the model and adapter, run the algorithm, write results, log and plots into ``out``."""
    from shears.adapters.io import SuperAdapter
    from shears.models import load_model

    model, tok = load_model(model_spec, cfg.dtype, cfg.device)
    check_search_context(cfg, settings, max_positions(model))  # GGUF / hub models: known now
    layers = SuperAdapter.load(model, cfg.adapter, dropout=0.0).layers
    model.eval()
    objective = build_objective(cfg, model, tok, layers, space, settings, examples)
    fingerprint = {
        "adapter": str(Path(cfg.adapter).resolve()),
        "model": absolute_spec(model_spec),
        "objective": objective.name,
        "space": space_digest(space),
        "dtype": cfg.dtype,
        **{k: v for k, v in settings.items() if k != "from_training"},
        "batch_size": cfg.batch_size if cfg.objective != "loss" else None,
        "max_new_tokens": cfg.max_new_tokens if cfg.objective == "math" else None,
    }
    evaluator = CachedEvaluator(
        space, objective, cfg.budget, out / SEARCH_LOG, resume=cfg.resume, fingerprint=fingerprint
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
        "resolved": {  # the paths above (as given) made absolute
            "model": absolute_spec(model_spec),
            "adapter": absolute_spec(cfg.adapter, local=True),
            "output_dir": absolute_spec(cfg.output_dir, local=True),
        },
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
    atomic_write_json(out / SEARCH_RESULTS, results)
    if cfg.plots:
        from shears.search.plots import plot_progress, plot_ranks

        plot_progress(results["history"], objective.name, evaluator.maximize, out / SEARCH_PLOT)
        if results["best"]:
            plot_ranks(
                results["best"]["config"],
                {g.name: g.widths for g in space.groups},
                out / SEARCH_RANKS_PLOT,
            )
    logger.info(
        "best %s=%s with %d adapter parameters after %d evaluations (%s); wrote %s",
        objective.name,
        results["best"]["score"] if results["best"] else None,
        results["best"]["adapter_parameters"] if results["best"] else 0,
        evaluator.n_evaluations,
        outcome.stop_reason,
        cfg.output_dir,
    )
    return results
