import json

import pytest

from shears.adapters.search_space import Group, SearchSpace
from shears.errors import ShearsError
from shears.search import BudgetExhausted, CachedEvaluator, FunctionObjective, run_algorithm

W = [16, 12, 8, 4]


def make_space(n=5):
    groups = [Group(f"{i}.g", [f"model.layers.{i}.m"], list(W)) for i in range(n)]
    return SearchSpace(groups, {f"model.layers.{i}.m": (6, 6) for i in range(n)})


def f(c):
    target = [16, 4, 8, 12, 4]
    return float(sum(abs(W.index(c[f"{i}.g"]) - W.index(t)) for i, t in enumerate(target)))


class Killed(Exception):
    pass


def killing(after):
    """An objective that dies (like a SIGKILL mid-search) on call number ``after + 1``."""

    def g(c):
        g.calls += 1
        if g.calls > after:
            raise Killed
        return f(c)

    g.calls = 0
    return g


def test_cache_prevents_second_evaluation(tmp_path):
    space = make_space()
    obj = FunctionObjective(f)
    ev = CachedEvaluator(space, obj, budget=3, log_path=tmp_path / "log.jsonl")
    c = space.heuristic()
    s1 = ev(c)
    s2 = ev(dict(reversed(list(c.items()))))  # same config, other key order
    assert s1 == s2 and obj.calls == 1 and ev.n_evaluations == 1
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "header" in json.loads(lines[0])
    ev(space.maximal())
    ev(space.minimal())
    with pytest.raises(BudgetExhausted):
        ev({**c, "0.g": 4})
    assert ev(space.maximal()) is not None  # cached configs stay free after the budget


def test_budget_must_be_positive():
    with pytest.raises(ShearsError, match="budget must be >= 1"):
        CachedEvaluator(make_space(), FunctionObjective(f), budget=0)


@pytest.mark.parametrize(
    "algorithm,kw",
    [
        ("hill-climbing", {"max_turns": 20, "patience": 0}),
        ("random", {"seed": 2}),
        ("evolutionary", {"population": 6, "max_turns": 20, "seed": 3}),
    ],
)
def test_kill_and_resume_gives_the_same_result(tmp_path, algorithm, kw):
    space = make_space()
    ref = CachedEvaluator(space, FunctionObjective(f), budget=40, log_path=tmp_path / "ref.jsonl")
    want = run_algorithm(ref, algorithm, **kw)

    log = tmp_path / "log.jsonl"
    ev = CachedEvaluator(space, FunctionObjective(killing(13)), budget=40, log_path=log)
    with pytest.raises(Killed):
        run_algorithm(ev, algorithm, **kw)
    # a kill can also cut the last log line short
    with open(log, "a") as fh:
        fh.write('{"key": "16,16')
    obj = FunctionObjective(f)
    ev2 = CachedEvaluator(space, obj, budget=40, log_path=log, resume=True)
    got = run_algorithm(ev2, algorithm, **kw)
    assert got.best.config == want.best.config and got.best.score == want.best.score
    assert [e.config for e in ev2.history] == [e.config for e in ref.history]
    assert obj.calls == ref.n_evaluations - 13  # nothing logged was evaluated again
    assert sum(e.resumed for e in ev2.history) == 13
    # the log now holds every evaluation exactly once
    keys = [json.loads(x)["key"] for x in log.read_text().splitlines()[1:]]
    assert len(keys) == len(set(keys)) == ref.n_evaluations


def test_resume_with_other_settings_is_refused(tmp_path):
    space = make_space()
    log = tmp_path / "log.jsonl"
    ev = CachedEvaluator(space, FunctionObjective(f), log_path=log, fingerprint={"objective": "a"})
    ev(space.heuristic())
    with pytest.raises(ShearsError, match="other settings.*objective"):
        CachedEvaluator(
            space, FunctionObjective(f), log_path=log, resume=True, fingerprint={"objective": "b"}
        )


def test_invalid_config_is_a_clear_error():
    space = make_space()
    ev = CachedEvaluator(space, FunctionObjective(f), budget=1)
    with pytest.raises(ShearsError, match="rank 5"):
        ev({**space.heuristic(), "0.g": 5})
    with pytest.raises(ShearsError, match="misses group"):
        ev({"0.g": 16})


def test_a_reader_replays_the_log_and_never_writes_it(tmp_path):
    """``write_log=False`` (the other processes of a data-parallel search): a fresh log is not
    started, a resumed one is read as the writer reads it and left byte for byte unchanged."""
    space, log = make_space(), tmp_path / "log.jsonl"
    eights = {g.name: 8 for g in space.groups}
    CachedEvaluator(space, FunctionObjective(f), log_path=log, write_log=False)
    assert not log.exists()
    ev = CachedEvaluator(space, FunctionObjective(f), budget=3, log_path=log)
    with pytest.raises(BudgetExhausted):
        for c in [space.maximal(), space.minimal(), space.heuristic(), eights]:
            ev(c)
    with open(log, "a") as fh:
        fh.write('{"key": "cut sho')  # a line cut short by a kill
    before = log.read_bytes()
    obj = FunctionObjective(f)
    reader = CachedEvaluator(space, obj, log_path=log, resume=True, write_log=False)
    assert reader(space.minimal()) == ev(space.minimal()) and obj.calls == 0
    reader(eights)  # new: evaluated, not logged
    assert obj.calls == 1 and log.read_bytes() == before
