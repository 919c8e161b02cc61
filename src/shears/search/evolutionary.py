"""(mu + lambda) evolutionary search, single- or two-objective (NSGA-II selection).

Two objectives: the score (as a cost, lower is better) and the adapter's parameter count. Parents
are picked by binary tournament, children by uniform crossover and per-group mutation (one step
up or down the width list), survivors by non-dominated sorting and crowding distance (NSGA-II)
or by cost alone.
"""

from __future__ import annotations

import math
import random

from shears.adapters.search_space import Config, SearchSpace
from shears.search.evaluator import BudgetExhausted, CachedEvaluator
from shears.search.hill_climb import SearchOutcome
from shears.search.space_ops import random_config

Point = tuple[float, ...]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse in every objective and better in one (all minimised)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated_fronts(points: list[Point]) -> list[list[int]]:
    """Indices of ``points`` split into Pareto fronts, best front first (O(n^2) per front)."""
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [
            i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)
        ]
        fronts.append(front)
        remaining = [i for i in remaining if i not in set(front)]
    return fronts


def crowding_distance(points: list[Point], front: list[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each index in ``front`` (boundary points: inf)."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for m in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, b, c in zip(order, order[1:], order[2:], strict=False):
            dist[b] += (points[c][m] - points[a][m]) / (hi - lo)
    return dist


def rank_population(points: list[Point]) -> list[tuple[int, float]]:
    """Per individual ``(front index, -crowding)``: sort ascending to get the best first."""
    key: list[tuple[int, float]] = [(0, 0.0)] * len(points)
    for r, front in enumerate(non_dominated_fronts(points)):
        cd = crowding_distance(points, front)
        for i in front:
            key[i] = (r, -cd[i])
    return key


def pareto_front(points: list[Point]) -> list[int]:
    return non_dominated_fronts(points)[0] if points else []


def _step(widths: list[int], rank: int, rng: random.Random) -> int:
    """One random step up or down ``widths`` from ``rank``."""
    i = widths.index(rank)
    return widths[rng.choice([j for j in (i - 1, i + 1) if 0 <= j < len(widths)])]


def _mutate(space: SearchSpace, c: Config, rng: random.Random, prob: float) -> Config:
    """Each group moves one step with probability ``prob``; at least one group always moves."""
    out = dict(c)
    movable = [g for g in space.groups if len(g.widths) > 1]
    hit = [g for g in movable if rng.random() < prob]
    if not hit and movable:
        hit = [rng.choice(movable)]
    for g in hit:
        out[g.name] = _step(g.widths, out[g.name], rng)
    return out


def _crossover(space: SearchSpace, a: Config, b: Config, rng: random.Random) -> Config:
    return {g.name: (a if rng.random() < 0.5 else b)[g.name] for g in space.groups}


def evolutionary(
    space: SearchSpace,
    evaluator: CachedEvaluator,
    population: int = 16,
    generations: int = 10,
    mutation_prob: float | None = None,
    crossover_prob: float = 0.9,
    two_objectives: bool = False,
    seed: int = 0,
) -> SearchOutcome:
    """Run (mu + lambda) with mu = lambda = ``population`` for up to ``generations``.

    The first population holds the heuristic, maximal and minimal configs plus random ones.
    ``mutation_prob`` per group defaults to 1 / number of groups.
    """
    rng = random.Random(seed)
    p_mut = mutation_prob if mutation_prob is not None else 1.0 / len(space.groups)

    def point(c: Config) -> Point:
        cost = evaluator.cost_of(c)
        return (cost, float(space.adapter_parameters(c))) if two_objectives else (cost,)

    def select(pop: list[Config], pts: list[Point], k: int) -> tuple[list[Config], list[Point]]:
        key = rank_population(pts) if two_objectives else [(p[0], 0.0) for p in pts]
        order = sorted(range(len(pop)), key=lambda i: key[i])[:k]
        return [pop[i] for i in order], [pts[i] for i in order]

    pop: list[Config] = []
    pts: list[Point] = []
    history: list[dict] = []
    stop = "generations"
    try:
        seeds = [space.heuristic(), space.maximal(), space.minimal()]
        seen: set[str] = set()
        tries = 0
        while len(pop) < population and tries < 100 * population:
            tries += 1
            c = seeds.pop(0) if seeds else random_config(space, rng)
            k = evaluator.key(c)
            if k in seen:
                continue
            seen.add(k)
            pts.append(point(c))
            pop.append(c)
        for gen in range(1, generations + 1):
            key = rank_population(pts) if two_objectives else [(p[0], 0.0) for p in pts]

            def tournament(key=key, pop=pop) -> Config:
                i, j = rng.randrange(len(pop)), rng.randrange(len(pop))
                return pop[i] if key[i] <= key[j] else pop[j]

            children: list[Config] = []
            child_pts: list[Point] = []
            tries = 0
            while len(children) < population and tries < 100 * population:
                tries += 1
                a = tournament()
                child = (
                    _crossover(space, a, tournament(), rng) if rng.random() < crossover_prob else a
                )
                child = _mutate(space, child, rng, p_mut)
                k = evaluator.key(child)
                if k in seen:
                    continue
                seen.add(k)
                child_pts.append(point(child))
                children.append(child)
            if not children:
                stop = "no new children"
                break
            pop, pts = select(pop + children, pts + child_pts, population)
            history.append(
                {
                    "generation": gen,
                    "best_cost": min(p[0] for p in pts),
                    "evaluations": evaluator.n_evaluations,
                }
            )
    except BudgetExhausted:
        stop = "budget"
    extra = {}
    if two_objectives:
        allp = [(evaluator.cost(e.score), float(e.adapter_parameters)) for e in evaluator.history]
        extra["pareto_front"] = [evaluator.history[i].index for i in pareto_front(allp)]
    return SearchOutcome(evaluator.best(), stop, history, extra)
