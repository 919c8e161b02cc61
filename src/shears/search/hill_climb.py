"""Hill-climbing over sub-adapter configs (the Shears paper's search).

Start at a config (the heuristic by default); each turn evaluates the unvisited one-step
neighbours of the current config and moves to the best of them, even when it is worse (as the
reference notebook); a config is never visited twice. Stops after ``max_turns``, when the budget is
spent, or after ``patience`` turns in a row without a new best. Returns the best config *seen*.

With ``screen_top_k > 0`` and an objective that can ``estimate`` (first-order screening), only the
``screen_top_k`` neighbours with the best estimates are evaluated exactly, plus any neighbour
already evaluated (free).

With an adapter-size budget (the evaluator's ``max_params``) the walk stays within it: neighbours
over the budget are not candidates, and a start over it is first projected onto the largest
uniform config that fits (every group at one width, tried from large to small; see
:func:`shears.search.size_limit.project`), whatever the start's shape was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shears.adapters.search_space import Config, SearchSpace
from shears.search.evaluator import BudgetExhausted, CachedEvaluator, Evaluation
from shears.search.space_ops import config_key, neighbours

logger = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    """What an algorithm returns: the best evaluation and a short account of the walk."""

    best: Evaluation | None
    stop_reason: str
    trajectory: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def screen(
    space: SearchSpace,
    evaluator: CachedEvaluator,
    current: Config,
    cands: list[Config],
    top_k: int,
) -> tuple[list[Config], int | None]:
    """``cands`` cut to the ``top_k`` best estimated new ones plus those already evaluated, and
    how many new ones were screened (``None``: no screening, ``cands`` unchanged)."""
    if top_k <= 0:
        return cands, None
    fresh = [c for c in cands if not evaluator.is_known(c)]
    est = evaluator.estimate(current, fresh) if len(fresh) > top_k else None
    if est is None:
        return cands, None
    order = sorted(range(len(fresh)), key=lambda i: est[i])
    keep = {config_key(space, fresh[i]) for i in order[:top_k]}
    cands = [c for c in cands if evaluator.is_known(c) or config_key(space, c) in keep]
    return cands, len(fresh)


def score_all(
    evaluator: CachedEvaluator, cands: list[Config]
) -> tuple[list[tuple[float, Config]], bool]:
    """``(cost, config)`` of each of ``cands`` in order, until the budget runs out (then
    ``True``)."""
    scored: list[tuple[float, Config]] = []
    for c in cands:
        try:
            scored.append((evaluator.cost_of(c), c))
        except BudgetExhausted:
            return scored, True
    return scored, False


def start_config(space: SearchSpace, evaluator: CachedEvaluator, start: Config | None) -> Config:
    """``start`` (default: the heuristic), validated and projected into the evaluator's
    ``max_params`` when over it."""
    config = space.validate(start if start is not None else space.heuristic())
    projected = evaluator.project(config)
    if projected != config:
        logger.info(
            "the start has %d adapter parameters, over --max-params %d: starting at the largest "
            "uniform config within it (%d)",
            space.adapter_parameters(config),
            evaluator.max_params,
            space.adapter_parameters(projected),
        )
    return projected


def hill_climb(
    space: SearchSpace,
    evaluator: CachedEvaluator,
    start: Config | None = None,
    max_turns: int = 10,
    patience: int = 1,
    screen_top_k: int = 0,
) -> SearchOutcome:
    """Run hill-climbing; see the module docstring. ``patience=0``: never stop early."""
    current = start_config(space, evaluator, start)
    visited = {config_key(space, current)}
    trajectory: list[dict] = []
    try:
        cur_cost = evaluator.cost_of(current)
    except BudgetExhausted:
        return SearchOutcome(evaluator.best(), "budget", trajectory)
    trajectory.append({"turn": 0, "config_key": config_key(space, current), "cost": cur_cost})
    best_cost, stale, stop = cur_cost, 0, "turns"
    for turn in range(1, max_turns + 1):
        evaluator.set_anchor(current)
        cands = [
            c
            for _, _, c in neighbours(space, current)
            if config_key(space, c) not in visited and evaluator.fits(c)
        ]
        if not cands:
            stop = "no unvisited neighbour"
            break
        cands, n_screened = screen(space, evaluator, current, cands, screen_top_k)
        scored, out_of_budget = score_all(evaluator, cands)
        if not scored:
            stop = "budget"
            break
        move_cost, current = min(scored, key=lambda t: t[0])  # first on ties
        visited.add(config_key(space, current))
        trajectory.append(
            {
                "turn": turn,
                "config_key": config_key(space, current),
                "cost": move_cost,
                "candidates": len(scored),
                "screened_from": n_screened,
                "evaluations": evaluator.n_evaluations,
            }
        )
        logger.info(
            "turn %d: moved to cost %.5f (best %.5f), %d candidates, %d evaluations so far",
            turn,
            move_cost,
            min(best_cost, move_cost),
            len(scored),
            evaluator.n_evaluations,
        )
        best_cost, stale = (move_cost, 0) if move_cost < best_cost else (best_cost, stale + 1)
        if out_of_budget:
            stop = "budget"
            break
        if patience and stale >= patience:
            stop = "no improvement"
            break
    return SearchOutcome(evaluator.best(), stop, trajectory)
