"""One sub-adapter resolver for search --start, eval --sub-adapter and export --sub-adapter: names
and aliases, inline JSON, widths files, search results (file or folder), results of eval and
export, and each command's wording of errors."""

import json
import re

import pytest

from shears.adapters.search_space import NAMED_CONFIGS, Group, SearchSpace
from shears.adapters.select import (
    EVAL_SUB_ADAPTER,
    EXPORT_SUB_ADAPTER,
    SEARCH_START,
    resolve_sub_adapter,
)
from shears.errors import ShearsError


@pytest.fixture(scope="module")
def space():
    """Two blocks: q+v share a rank, up has its own; widths 8, 4, 2."""
    groups = []
    for i in range(2):
        attn = [f"model.layers.{i}.self_attn.{p}_proj" for p in "qv"]
        groups += [Group(f"{i}.q_proj+v_proj", attn, [8, 4, 2])]
        groups += [Group(f"{i}.up_proj", [f"model.layers.{i}.mlp.up_proj"], [8, 4, 2])]
    return SearchSpace(groups, {m: (16, 16) for g in groups for m in g.modules})


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def test_named_configs_and_aliases(space):
    assert set(NAMED_CONFIGS.values()) == {"heuristic", "max", "min"}
    for name, canonical in NAMED_CONFIGS.items():
        choice = resolve_sub_adapter(f" {name} ", space)
        assert choice.label == name and choice.source == canonical
        assert choice.config == space.named_config(canonical)
    assert resolve_sub_adapter("maximal", space).config == space.maximal()


def test_inline_and_widths_file(space, tmp_path):
    choice = resolve_sub_adapter(json.dumps(space.minimal()), space)
    assert (choice.label, choice.source, choice.config) == ("inline", "inline", space.minimal())
    f = _write(tmp_path / "w.json", {"config": space.heuristic()})
    choice = resolve_sub_adapter(f, space, SEARCH_START)
    assert (choice.label, choice.source, choice.config) == (f, "file", space.heuristic())
    assert choice.details == {"file": f}


def test_search_results_file_and_folder(space, tmp_path):
    best = {"config": space.minimal(), "score": 1.5, "adapter_parameters": 7, "index": 3}
    results = {"algorithm": "hill-climbing", "budget": 4, "best": best, "history": [{}, {}]}
    f = _write(tmp_path / "search_results.json", results)
    for spec in (f, str(tmp_path)):
        choice = resolve_sub_adapter(spec, space, EVAL_SUB_ADAPTER)
        assert choice.source == "search" and choice.config == space.minimal()
        assert choice.label == spec
        assert choice.details == {
            "file": f,
            "algorithm": "hill-climbing",
            "budget": 4,
            "best_score": 1.5,
            "best_adapter_parameters": 7,
            "best_index": 3,
            "evaluations": 2,
        }
    older = _write(tmp_path / "old.json", {"best_config": space.maximal()})
    assert resolve_sub_adapter(older, space).config == space.maximal()


def test_results_of_eval_and_export(space, tmp_path):
    """``{"sub_adapter": {"config": ...}}``: the sub-adapter an evaluation or an export used."""
    evaluated = {"model": "m", "sub_adapter": {"name": "max", "config": space.maximal()}}
    f = _write(tmp_path / "eval_results.json", evaluated)
    assert resolve_sub_adapter(f, space, EVAL_SUB_ADAPTER).config == space.maximal()
    bare = _write(tmp_path / "bare.json", {"sub_adapter": space.minimal()})
    assert resolve_sub_adapter(bare, space, SEARCH_START).config == space.minimal()


@pytest.mark.parametrize(
    "wording, unknown, unreadable",
    [
        (SEARCH_START, "--start 'best' is neither heuristic/max/min", "--start file"),
        (EVAL_SUB_ADAPTER, "neither heuristic/max/min nor an existing JSON file", "sub-adapter config"),
        (EXPORT_SUB_ADAPTER, "--sub-adapter 'best' is neither heuristic, max, min", "sub-adapter file"),
    ],
)  # fmt: skip
def test_each_command_keeps_its_wording(space, tmp_path, wording, unknown, unreadable):
    with pytest.raises(ShearsError, match=unknown):
        resolve_sub_adapter("best", space, wording)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(ShearsError, match=f"^{unreadable} '{re.escape(str(bad))}' is not valid"):
        resolve_sub_adapter(str(bad), space, wording)
    with pytest.raises(ShearsError, match=f"^{wording.flag} inline JSON is not valid"):
        resolve_sub_adapter('{"a": ', space, wording)
    none = _write(tmp_path / "none.json", {"best": None, "history": []})
    with pytest.raises(
        ShearsError, match=f"^{wording.flag} '{re.escape(none)}': .*holds no best config"
    ):
        resolve_sub_adapter(none, space, wording)
    with pytest.raises(
        ShearsError, match=f"^{wording.flag} folder '{re.escape(str(tmp_path))}' holds no"
    ):
        resolve_sub_adapter(str(tmp_path), space, wording)
    rank = _write(tmp_path / "rank.json", space.maximal() | {space.groups[0].name: 5})
    with pytest.raises(
        ShearsError, match=rf"^{wording.flag} '{re.escape(rank)}': .*rank 5; allowed"
    ):
        resolve_sub_adapter(rank, space, wording)
