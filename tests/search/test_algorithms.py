import pytest
from search_helpers import config_from_key

from shears.adapters.search_space import Group, SearchSpace
from shears.errors import ShearsError
from shears.search import (
    AlgorithmConfig,
    CachedEvaluator,
    FunctionObjective,
    SearchConfig,
    evolutionary,
    hill_climb,
    random_search,
    run_algorithm,
)
from shears.search.evolutionary import crowding_distance, dominates, non_dominated_fronts
from shears.search.space_ops import config_key, neighbours

WIDTHS = [32, 24, 16, 8]


def make_space(n=6, widths=WIDTHS):
    groups = [Group(f"{i}.g", [f"model.layers.{i}.m"], list(widths)) for i in range(n)]
    return SearchSpace(groups, {f"model.layers.{i}.m": (10, 10) for i in range(n)})


def separable(target: dict[str, int]):
    """A synthetic objective with its unique optimum (0) at ``target``."""

    def f(c):
        return float(sum((WIDTHS.index(c[g]) - WIDTHS.index(r)) ** 2 for g, r in target.items()))

    return f


TARGET = {"0.g": 32, "1.g": 8, "2.g": 16, "3.g": 32, "4.g": 24, "5.g": 8}


def test_hill_climbing_reaches_known_optimum():
    space = make_space()
    obj = FunctionObjective(separable(TARGET))
    ev = CachedEvaluator(space, obj, budget=1000)
    out = hill_climb(space, ev, max_turns=50, patience=1)
    assert out.best.config == TARGET and out.best.score == 0.0
    # starts at the heuristic, which is not the optimum
    assert ev.history[0].config == space.heuristic() != TARGET


def test_hill_climbing_returns_best_seen_not_last():
    space = make_space()
    obj = FunctionObjective(separable(TARGET))
    ev = CachedEvaluator(space, obj, budget=10_000)
    # patience 0: keep moving to the best unvisited neighbour even when it is worse
    out = hill_climb(space, ev, max_turns=30, patience=0)
    last = config_key(space, ev.space.validate(ev.history[-1].config))
    assert out.best.config == TARGET
    final_pos = out.trajectory[-1]
    assert final_pos["cost"] > 0  # the walk went past the optimum...
    assert out.best.score == 0.0  # ...but the best seen is returned
    assert last != config_key(space, TARGET)


def test_hill_climbing_never_revisits_and_never_reevaluates():
    space = make_space()
    seen = []
    obj = FunctionObjective(lambda c: (seen.append(config_key(space, c)), separable(TARGET)(c))[1])
    ev = CachedEvaluator(space, obj, budget=10_000)
    out = hill_climb(space, ev, max_turns=40, patience=0)
    assert len(seen) == len(set(seen))  # no config evaluated twice
    positions = [t["config_key"] for t in out.trajectory]
    assert len(positions) == len(set(positions))  # no config visited twice
    # each move is a one-step neighbour of the previous position
    for a, b in zip(positions, positions[1:], strict=False):
        nb = {config_key(space, n) for _, _, n in neighbours(space, config_from_key(space, a))}
        assert b in nb


def test_hill_climbing_respects_budget_and_turns():
    space = make_space()
    obj = FunctionObjective(separable(TARGET))
    ev = CachedEvaluator(space, obj, budget=7)
    out = hill_climb(space, ev, max_turns=50)
    assert ev.n_evaluations == 7 == obj.calls and out.stop_reason == "budget"
    ev2 = CachedEvaluator(space, FunctionObjective(separable(TARGET)))
    out2 = hill_climb(space, ev2, max_turns=1)
    assert out2.stop_reason == "turns" and ev2.n_evaluations == 1 + len(
        neighbours(space, space.heuristic())
    )


def test_screened_hill_climbing_uses_estimates():
    space = make_space()
    f = separable(TARGET)

    class WithEstimate(FunctionObjective):
        def estimate(self, config, candidates):
            return [f(c) for c in candidates]  # a perfect estimator

    ev_full = CachedEvaluator(space, FunctionObjective(f))
    hill_climb(space, ev_full, max_turns=50)
    ev = CachedEvaluator(space, WithEstimate(f))
    out = hill_climb(space, ev, max_turns=50, screen_top_k=2)
    assert out.best.config == TARGET
    assert ev.n_evaluations < ev_full.n_evaluations


def test_maximize_objective():
    space = make_space()
    f = separable(TARGET)
    ev = CachedEvaluator(space, FunctionObjective(lambda c: -f(c), maximize=True))
    out = hill_climb(space, ev, max_turns=50)
    assert out.best.config == TARGET


def test_random_search_is_seeded_distinct_and_budgeted():
    space = make_space()
    runs = []
    for _ in range(2):
        ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), budget=20)
        random_search(space, ev, 100, seed=3)
        runs.append([config_key(space, e.config) for e in ev.history])
    assert runs[0] == runs[1] and len(runs[0]) == 20 == len(set(runs[0]))
    tiny = make_space(n=2, widths=[4, 2])
    ev = CachedEvaluator(tiny, FunctionObjective(lambda c: 0.0), budget=100)
    out = random_search(tiny, ev, 100, seed=0)  # only 4 configs exist
    assert ev.n_evaluations == 4 and out.stop_reason == "samples"


@pytest.mark.parametrize("two", [False, True])
def test_evolutionary_improves_and_respects_budget(two):
    space = make_space()
    obj = FunctionObjective(separable(TARGET))
    ev = CachedEvaluator(space, obj, budget=150)
    out = evolutionary(space, ev, population=10, generations=50, two_objectives=two, seed=1)
    assert ev.n_evaluations <= 150
    h = separable(TARGET)(space.heuristic())
    assert out.best.score < h
    if two:
        front = [ev.history[i] for i in out.extra["pareto_front"]]
        pts = [(e.score, e.adapter_parameters) for e in front]
        assert not any(dominates(a, b) for a in pts for b in pts)
    else:
        assert out.best.score <= 2.0


def test_nsga_helpers_on_hand_example():
    pts = [(1.0, 5.0), (2.0, 2.0), (3.0, 1.0), (2.5, 3.0), (4.0, 4.0)]
    assert non_dominated_fronts(pts) == [[0, 1, 2], [3], [4]]
    cd = crowding_distance(pts, [0, 1, 2])
    assert cd[0] == cd[2] == float("inf") and 0 < cd[1] < float("inf")


def test_reference_points_and_dispatch():
    space = make_space()
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)))
    out = run_algorithm(ev, "max")
    assert out.best.config == space.maximal() and ev.n_evaluations == 1
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)))
    out = run_algorithm(ev, "heuristic", score_best=False)
    assert out.best.config == space.heuristic() and ev.n_evaluations == 0


@pytest.mark.parametrize(
    "settings",
    [
        {"algorithm": "evolutionary", "population": 6, "max_turns": 5, "seed": 3},
        {"algorithm": "nsga2", "population": 6, "max_turns": 5, "two_objectives": True},
        {"algorithm": "hc", "max_turns": 4, "patience": 0},
        {"algorithm": "random", "seed": 4},
    ],
)
def test_settings_whole_or_as_keywords_walk_the_same_path(settings):
    """``run_algorithm`` takes an AlgorithmConfig whole, or a name and keyword settings."""
    space = make_space()
    walks = []
    for call in (
        lambda ev: run_algorithm(ev, AlgorithmConfig(**settings)),
        lambda ev: run_algorithm(ev, **settings),
    ):
        ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), budget=30)
        out = call(ev)
        walks.append(([e.config for e in ev.history], out.stop_reason, out.trajectory, out.extra))
    assert walks[0] == walks[1]


def test_algorithm_config_of_a_search_config():
    cfg = SearchConfig(adapter="a", algorithm="evo", population=8, seed=5, score_best=False)
    got = AlgorithmConfig.of(cfg)
    assert (got.algorithm, got.population, got.seed, got.score_best) == (
        "evolutionary",
        8,
        5,
        False,
    )
    assert got.screen_top_k == cfg.screen_top_k == 16  # the command's default, not the library's
    with pytest.raises(ShearsError, match="algorithm 'annealing' is not known"):
        AlgorithmConfig("annealing")
