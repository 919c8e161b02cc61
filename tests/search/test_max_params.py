"""The adapter-size budget of a search (``max_params`` / ``--max-params``): every algorithm only
evaluates and returns configs within it; bad budgets fail in one line before any work."""

from __future__ import annotations

import json

import pytest
from test_algorithms import TARGET, make_space, separable

from input_helpers import base_with_adapter, one_error, shears
from shears.adapters.search_space import Group, SearchSpace
from shears.errors import ShearsError
from shears.search import (
    CachedEvaluator,
    FunctionObjective,
    SearchConfig,
    evolutionary,
    hill_climb,
    random_search,
    run_algorithm,
)
from shears.search.size_limit import project, uniform_configs

# make_space(): 6 groups of one 10x10 module, widths 32/24/16/8: 20 parameters per rank
# sizes: max 3840, heuristic (all 24) 2880, all 16 1920, min 960; TARGET 2400
LIMIT = 2000


def spied(space: SearchSpace) -> tuple[FunctionObjective, list[int]]:
    """The separable objective, recording the size of every config it evaluates."""
    sizes: list[int] = []
    f = separable(TARGET)

    def objective(c):
        sizes.append(space.adapter_parameters(c))
        return f(c)

    return FunctionObjective(objective), sizes


def test_uniform_configs_and_projection():
    space = SearchSpace(
        [Group("a", ["m.a"], [8, 6, 4]), Group("b", ["m.b"], [8, 4])],
        {"m.a": (10, 10), "m.b": (10, 10)},
    )
    assert uniform_configs(space) == [{"a": 8, "b": 8}, {"a": 6, "b": 4}, {"a": 4, "b": 4}]
    assert project(space, {"a": 8, "b": 4}, 0) == {"a": 8, "b": 4}  # no limit
    assert project(space, {"a": 8, "b": 4}, 240) == {"a": 8, "b": 4}  # fits: kept
    assert project(space, {"a": 8, "b": 8}, 239) == {"a": 6, "b": 4}
    with pytest.raises(ShearsError, match="min config has 160 adapter parameters"):
        project(space, {"a": 8, "b": 8}, 100)


def test_over_budget_configs_are_never_evaluated_nor_counted():
    space = make_space()
    obj, sizes = spied(space)
    ev = CachedEvaluator(space, obj, budget=1, max_params=LIMIT)
    assert ev(space.maximal()) == float("inf") and ev.cost_of(space.maximal()) == float("inf")
    assert ev.n_evaluations == 0 == obj.calls and ev.best() is None
    ev(space.minimal())  # the one evaluation of the budget is still there
    assert ev.best().config == space.minimal() and sizes == [960]
    maxi = CachedEvaluator(space, FunctionObjective(lambda c: 1.0, maximize=True), max_params=LIMIT)
    assert maxi.cost_of(space.maximal()) == float("inf") and maxi.n_evaluations == 0


def test_hill_climbing_stays_within_the_budget():
    space = make_space()
    obj, sizes = spied(space)
    ev = CachedEvaluator(space, obj, budget=500, max_params=LIMIT)
    out = hill_climb(space, ev, max_turns=50, patience=0)
    assert sizes and max(sizes) <= LIMIT  # the start's steps up (2080) were never evaluated
    assert out.best.adapter_parameters <= LIMIT
    # the heuristic (2880) is over: the walk starts at the largest uniform config within (1920)
    assert ev.history[0].config == {g.name: 16 for g in space.groups}
    # the unconstrained optimum (2400) is out of reach; the best is no worse than the start
    assert out.best.score <= ev.history[0].score and out.best.config != TARGET


def test_hill_climbing_start_within_the_budget_is_kept():
    space = make_space()
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), max_params=2880)
    hill_climb(space, ev, start=space.maximal(), max_turns=1)  # max (3840) projects to all 24
    assert ev.history[0].config == space.heuristic()
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), max_params=2880)
    start = {**space.minimal(), "0.g": 32}
    hill_climb(space, ev, start=start, max_turns=1)
    assert ev.history[0].config == start


def test_random_search_skips_over_budget_samples():
    space = make_space()
    obj, sizes = spied(space)
    ev = CachedEvaluator(space, obj, budget=30, max_params=LIMIT)
    out = random_search(space, ev, 100, seed=3)
    assert ev.n_evaluations == 30 and max(sizes) <= LIMIT
    assert out.best.adapter_parameters <= LIMIT


def test_random_search_with_nothing_sampled_in_budget_still_answers():
    space = make_space()
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), budget=30, max_params=960)
    out = random_search(space, ev, 2, seed=0)  # only the min config fits; 200 draws at most
    assert out.best.config == space.minimal()
    assert all(e.adapter_parameters <= 960 for e in ev.history)


@pytest.mark.parametrize("two", [False, True])
def test_evolutionary_stays_within_the_budget(two):
    space = make_space()
    obj, sizes = spied(space)
    ev = CachedEvaluator(space, obj, budget=120, max_params=LIMIT)
    out = evolutionary(space, ev, population=8, generations=20, two_objectives=two, seed=1)
    assert sizes and max(sizes) <= LIMIT and out.best.adapter_parameters <= LIMIT
    # the projected heuristic / max seed (all 16) is in the first population
    assert {g.name: 16 for g in space.groups} in [e.config for e in ev.history]
    if two:
        assert all(ev.history[i].adapter_parameters <= LIMIT for i in out.extra["pareto_front"])


def test_reference_points_over_the_budget_fail():
    space = make_space()
    ev = CachedEvaluator(space, FunctionObjective(separable(TARGET)), max_params=LIMIT)
    with pytest.raises(ShearsError, match="the max config has 3840 adapter parameters, over"):
        run_algorithm(ev, "max")
    assert ev.n_evaluations == 0
    assert run_algorithm(ev, "min").best.config == space.minimal()


def test_bad_budgets_fail_in_one_line():
    space = make_space()
    with pytest.raises(ShearsError, match=r"below the smallest .* min config has 960 adapter"):
        CachedEvaluator(space, FunctionObjective(separable(TARGET)), max_params=959)
    msg = "--max-params must be >= 0 (0 = no limit), got -3"
    with pytest.raises(ShearsError) as err:
        SearchConfig(adapter="a", max_params=-3)
    assert str(err.value) == msg
    assert SearchConfig(adapter="a").max_params == 0


# ---------------------------------------------------------------------------- shears search


@pytest.fixture
def adapter(tmp_path, tiny_tokenizer):
    _, adapter = base_with_adapter(tmp_path / "setup", tiny_tokenizer)
    space = SearchSpace.load(adapter / "search_space.json")
    return adapter, space


def _search(adapter, out, *extra):
    return ("search", "--adapter", adapter, "--output-dir", out, "--val-size", "4", *extra)


def test_search_records_the_budget_and_stays_within_it(capsys, adapter, tmp_path):
    folder, space = adapter
    limit = space.adapter_parameters(space.heuristic()) - 1  # the start must be projected
    argv = _search(folder, tmp_path / "s", "--budget", "6", "--max-params", limit, "--no-plots")
    assert shears(capsys, *argv)[0] == 0
    res = json.loads((tmp_path / "s" / "search_results.json").read_text())
    assert res["max_params"] == limit == res["settings"]["max_params"]
    assert res["history"][0]["config"] == space.minimal()  # widths 8/6/4: all 4 is the largest
    assert all(e["adapter_parameters"] <= limit for e in res["history"])
    assert res["best"]["adapter_parameters"] <= limit
    # a resume with another budget is refused
    argv = _search(folder, tmp_path / "s", "--budget", "6", "--resume", "--no-plots")
    one_error(capsys, *argv, match="other settings (max_params)")


def test_search_without_a_budget_records_zero(capsys, adapter, tmp_path):
    folder, _ = adapter
    argv = _search(folder, tmp_path / "h", "--algorithm", "heuristic", "--no-plots")
    assert shears(capsys, *argv)[0] == 0
    res = json.loads((tmp_path / "h" / "search_results.json").read_text())
    assert res["max_params"] == 0 and res["evaluations"] == 1


def test_search_refuses_bad_budgets_before_loading(capsys, adapter, tmp_path):
    folder, space = adapter
    smallest = space.adapter_parameters(space.minimal())
    heuristic = space.adapter_parameters(space.heuristic())
    out = tmp_path / "out"
    one_error(
        capsys,
        *_search(folder, out, "--max-params", smallest - 1),
        match=f"--max-params {smallest - 1} is below the smallest sub-adapter",
    )
    one_error(
        capsys,
        *_search(folder, out, "--algorithm", "heuristic", "--max-params", heuristic - 1),
        match=f"the heuristic config has {heuristic} adapter parameters, over --max-params",
    )
    one_error(
        capsys,
        *_search(folder, out, "--max-params", "-3"),
        match="--max-params must be >= 0 (0 = no limit), got -3",
    )
    assert not out.exists()


def test_help_shows_the_flag(capsys):
    from shears.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "--max-params" in capsys.readouterr().out
