"""(mu + lambda) evolutionary search, single- or two-objective (NSGA-II selection).

Two objectives: the score (as a cost, lower is better) and the adapter's parameter count. Parents
are picked by binary tournament, children by uniform crossover and per-group mutation (one step
up or down the width list), survivors by non-dominated sorting and crowding distance (NSGA-II)
or by cost alone.

With an adapter-size budget (the evaluator's ``max_params``) a config over it never enters the
population (it is skipped, free, like one seen before), and the heuristic / maximal seeds of the
first population are projected into the budget (:func:`shears.search.size_limit.project`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

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


class _Evolution:
    """The state of one run: population, its points (objective values), every config seen."""

    def __init__(
        self, space: SearchSpace, evaluator: CachedEvaluator, seed: int, two_objectives: bool
    ) -> None:
        self.space = space
        self.evaluator = evaluator
        self.rng = random.Random(seed)
        self.two_objectives = two_objectives
        self.pop: list[Config] = []
        self.pts: list[Point] = []
        self.seen: set[str] = set()

    def point(self, c: Config) -> Point:
        cost = self.evaluator.cost_of(c)
        return (cost, float(self.space.adapter_parameters(c))) if self.two_objectives else (cost,)

    def keys(self, pts: list[Point]) -> list[tuple[float, float]]:
        """Sort keys, best first: (front, -crowding) with two objectives, else (cost, 0)."""
        return rank_population(pts) if self.two_objectives else [(p[0], 0.0) for p in pts]

    def fill(self, n: int, make: Callable[[], Config]) -> tuple[list[Config], list[Point]]:
        """Up to ``n`` configs from ``make()`` not seen before, evaluated (100 tries per place)."""
        new: list[Config] = []
        pts: list[Point] = []
        tries = 0
        while len(new) < n and tries < 100 * n:
            tries += 1
            c = make()
            k = self.evaluator.key(c)
            if k in self.seen:
                continue
            self.seen.add(k)
            if not self.evaluator.fits(c):
                continue
            pts.append(self.point(c))
            new.append(c)
        return new, pts

    def tournament(self, key: list[tuple[float, float]]) -> Config:
        i, j = self.rng.randrange(len(self.pop)), self.rng.randrange(len(self.pop))
        return self.pop[i] if key[i] <= key[j] else self.pop[j]

    def child(self, key: list[tuple[float, float]], crossover_prob: float, p_mut: float) -> Config:
        """Binary-tournament parent(s), uniform crossover (with ``crossover_prob``), mutation."""
        a = self.tournament(key)
        if self.rng.random() < crossover_prob:
            a = _crossover(self.space, a, self.tournament(key), self.rng)
        return _mutate(self.space, a, self.rng, p_mut)

    def select(self, children: list[Config], child_pts: list[Point], k: int) -> None:
        """Keep the best ``k`` of parents and children."""
        pop, pts = self.pop + children, self.pts + child_pts
        key = self.keys(pts)
        order = sorted(range(len(pop)), key=lambda i: key[i])[:k]
        self.pop, self.pts = [pop[i] for i in order], [pts[i] for i in order]


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

    The first population holds the heuristic, maximal and minimal configs (projected into the
    evaluator's ``max_params``) plus random ones.
    ``mutation_prob`` per group defaults to 1 / number of groups.
    """
    evo = _Evolution(space, evaluator, seed, two_objectives)
    p_mut = mutation_prob if mutation_prob is not None else 1.0 / len(space.groups)
    history: list[dict] = []
    stop = "generations"
    try:
        seeds = [
            evaluator.project(c) for c in (space.heuristic(), space.maximal(), space.minimal())
        ]
        evo.pop, evo.pts = evo.fill(
            population, lambda: seeds.pop(0) if seeds else random_config(space, evo.rng)
        )
        for gen in range(1, generations + 1):
            key = evo.keys(evo.pts)
            children, child_pts = evo.fill(
                population, lambda key=key: evo.child(key, crossover_prob, p_mut)
            )
            if not children:
                stop = "no new children"
                break
            evo.select(children, child_pts, population)
            history.append(
                {
                    "generation": gen,
                    "best_cost": min(p[0] for p in evo.pts),
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
