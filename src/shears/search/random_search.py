"""Random search: uniform, independent widths per group, seeded; every sample costs one
evaluation unless it was seen before. Samples over the evaluator's ``max_params`` are skipped (free,
but each counts as a draw, so the draws stay bounded); if none fits, the heuristic projected into
the budget (:func:`shears.search.size_limit.project`) is evaluated instead, so that there is a
result."""

from __future__ import annotations

import random

from shears.adapters.search_space import SearchSpace
from shears.search.evaluator import BudgetExhausted, CachedEvaluator
from shears.search.hill_climb import SearchOutcome
from shears.search.space_ops import random_config, space_size


def random_search(
    space: SearchSpace, evaluator: CachedEvaluator, n_samples: int, seed: int = 0
) -> SearchOutcome:
    """Evaluate up to ``n_samples`` distinct random configs (fewer if the space is smaller)."""
    rng = random.Random(seed)
    target = min(n_samples, space_size(space))
    seen: set[str] = set()
    draws = 0
    try:
        while len(seen) < target and draws < 100 * target:
            draws += 1
            c = random_config(space, rng)
            k = evaluator.key(c)
            if k in seen or not evaluator.fits(c):
                continue
            seen.add(k)
            evaluator(c)
        if evaluator.best() is None:  # no sample within max_params
            evaluator(evaluator.project(space.heuristic()))
    except BudgetExhausted:
        return SearchOutcome(evaluator.best(), "budget")
    return SearchOutcome(evaluator.best(), "samples")
