"""One entry point for every search algorithm, on any objective (library API)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from shears.adapters.search_space import Config
from shears.search.config import AlgorithmConfig
from shears.search.evaluator import BudgetExhausted, CachedEvaluator, Evaluation
from shears.search.evolutionary import evolutionary
from shears.search.hill_climb import SearchOutcome, hill_climb
from shears.search.random_search import random_search
from shears.search.size_limit import check_reference_fits


def reference_point(evaluator: CachedEvaluator, name: str, score: bool) -> SearchOutcome:
    """The fixed config ``name`` (heuristic / min / max): evaluated once when ``score``, else not
    at all; a ShearsError when it is over the evaluator's ``max_params`` (never projected)."""
    space = evaluator.space
    check_reference_fits(space, name, evaluator.max_params)
    config = space.named_config(name)
    if score:
        with contextlib.suppress(BudgetExhausted):  # budget >= 1: never raised
            evaluator(config)
        key = evaluator.key(config)
        ev = next(e for e in evaluator.history if evaluator.key(e.config) == key)
        return SearchOutcome(ev, "reference point")
    ev = Evaluation(-1, config, float("nan"), space.adapter_parameters(config), 0.0)
    return SearchOutcome(ev, "reference point (not evaluated)")


def run_algorithm(
    evaluator: CachedEvaluator,
    algorithm: str | AlgorithmConfig = "hill-climbing",
    *,
    start: Config | None = None,
    **settings: Any,
) -> SearchOutcome:
    """Run an algorithm with ``evaluator`` (its budget bounds every algorithm).

    ``algorithm``: the settings whole (:class:`AlgorithmConfig`, e.g. ``AlgorithmConfig.of(cfg)``)
    or an algorithm's name; ``settings``: fields of :class:`AlgorithmConfig` to set or override.
    ``start``: where hill-climbing starts (default: the heuristic).
    """
    if isinstance(algorithm, AlgorithmConfig):
        cfg = replace(algorithm, **settings)
    else:
        cfg = AlgorithmConfig(algorithm, **settings)
    space = evaluator.space
    if cfg.algorithm == "hill-climbing":
        return hill_climb(space, evaluator, start, cfg.max_turns, cfg.patience, cfg.screen_top_k)
    if cfg.algorithm == "random":
        n = evaluator.budget if evaluator.budget is not None else 100
        return random_search(space, evaluator, n, cfg.seed)
    if cfg.algorithm == "evolutionary":
        return evolutionary(
            space,
            evaluator,
            cfg.population,
            cfg.max_turns,
            cfg.mutation_prob or None,
            two_objectives=cfg.two_objectives,
            seed=cfg.seed,
        )
    # heuristic / min / max
    return reference_point(evaluator, cfg.algorithm, cfg.score_best)
