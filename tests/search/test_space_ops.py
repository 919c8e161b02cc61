from search_helpers import config_from_key

from shears.adapters.search_space import Group, SearchSpace
from shears.search.space_ops import config_key, group_blocks, neighbours


def make_space(widths=(32, 24, 16), n=3):
    groups = [Group(f"{i}.g", [f"model.layers.{i}.m"], list(widths)) for i in range(n)]
    return SearchSpace(groups, {f"model.layers.{i}.m": (4, 4) for i in range(n)})


def test_heuristic_picks_middle_width():
    assert set(make_space((32, 24, 16)).heuristic().values()) == {24}
    assert set(make_space((32, 24, 16, 8)).heuristic().values()) == {24}  # (4 - 1) // 2 = 1
    assert set(make_space((32, 24, 16, 8, 4)).heuristic().values()) == {16}
    assert set(make_space((8,)).heuristic().values()) == {8}


def test_neighbours_are_exactly_the_one_step_moves():
    space = make_space((32, 24, 16), n=3)
    c = {"0.g": 32, "1.g": 24, "2.g": 16}
    got = {config_key(space, n) for _, _, n in neighbours(space, c)}
    want = {
        config_key(space, x)
        for x in (
            {"0.g": 24, "1.g": 24, "2.g": 16},  # 0 down (32 is the top: no up)
            {"0.g": 32, "1.g": 32, "2.g": 16},  # 1 up
            {"0.g": 32, "1.g": 16, "2.g": 16},  # 1 down
            {"0.g": 32, "1.g": 24, "2.g": 24},  # 2 up (16 is the bottom: no down)
        )
    }
    assert got == want
    assert len(neighbours(space, c)) == 4
    # every neighbour differs in exactly one group by exactly one position
    for g, r, n in neighbours(space, c):
        diff = [k for k in c if c[k] != n[k]]
        assert diff == [g] and n[g] == r
        w = space.by_name[g].widths
        assert abs(w.index(c[g]) - w.index(r)) == 1


def test_config_key_is_canonical():
    space = make_space()
    a = {"0.g": 32, "1.g": 24, "2.g": 16}
    b = dict(reversed(list(a.items())))
    assert config_key(space, a) == config_key(space, b)
    assert config_from_key(space, config_key(space, a)) == a


def test_group_blocks():
    space = make_space(n=3)
    assert group_blocks(space, "model.layers", 3) == {"0.g": 0, "1.g": 1, "2.g": 2}
    assert group_blocks(space, "transformer.h", 3) == {"0.g": 0, "1.g": 0, "2.g": 0}
