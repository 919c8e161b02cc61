"""One entry point for every search algorithm, on any objective (library API)."""

from __future__ import annotations

import contextlib

from shears.adapters.search_space import NAMED_CONFIGS, Config
from shears.errors import ShearsError
from shears.search.config import ALGORITHM_ALIASES, ALGORITHMS
from shears.search.evaluator import BudgetExhausted, CachedEvaluator, Evaluation
from shears.search.evolutionary import evolutionary
from shears.search.hill_climb import SearchOutcome, hill_climb
from shears.search.random_search import random_search


def reference_point(evaluator: CachedEvaluator, config: Config, score: bool) -> SearchOutcome:
    """A fixed config (heuristic / min / max): evaluated once when ``score``, else not at all."""
    space = evaluator.space
    config = space.validate(config)
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
    algorithm: str = "hill-climbing",
    *,
    start: Config | None = None,
    max_turns: int = 10,
    patience: int = 1,
    screen_top_k: int = 0,
    population: int = 16,
    mutation_prob: float | None = None,
    two_objectives: bool = False,
    seed: int = 0,
    score_reference: bool = True,
) -> SearchOutcome:
    """Run ``algorithm`` with ``evaluator`` (its budget bounds every algorithm)."""
    algorithm = ALGORITHM_ALIASES.get(algorithm, algorithm)
    space = evaluator.space
    if algorithm == "hill-climbing":
        return hill_climb(space, evaluator, start, max_turns, patience, screen_top_k)
    if algorithm == "random":
        n = evaluator.budget if evaluator.budget is not None else 100
        return random_search(space, evaluator, n, seed)
    if algorithm == "evolutionary":
        return evolutionary(
            space,
            evaluator,
            population,
            max_turns,
            mutation_prob or None,
            two_objectives=two_objectives,
            seed=seed,
        )
    if algorithm in NAMED_CONFIGS:
        return reference_point(evaluator, space.named_config(algorithm), score_reference)
    raise ShearsError(f"algorithm {algorithm!r} is not known; allowed: {', '.join(ALGORITHMS)}")
