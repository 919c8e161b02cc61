"""The run-folder contract: file names, typed readers, one-line errors for damaged files."""

from __future__ import annotations

import json

import pytest

from shears.artifacts import (
    EVAL_RESULTS,
    RESULTS,
    SEARCH_RESULTS,
    STAGE_FILES,
    TRAIN_CONFIG,
    EvalSummary,
    PruneSummary,
    SearchSummary,
    TrainSettings,
    TrainSummary,
    complete,
    find_eval_results,
    read_search_best,
    read_summary,
    read_train_settings,
    write_train_config,
)
from shears.errors import ShearsError
from shears.train.config import TrainConfig


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def test_every_stage_results_file_identifies_its_output():
    for stage, name in RESULTS.items():
        assert name in STAGE_FILES[stage]


def test_train_settings_round_trip_with_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "data.json", [])
    cfg = TrainConfig(model="base", data="data.json", train_size=4, cutoff_len=200)
    (tmp_path / "adapter").mkdir()
    write_train_config(tmp_path / "adapter", cfg)
    monkeypatch.chdir(tmp_path / "adapter")  # another current folder
    s = read_train_settings(tmp_path / "adapter")
    assert (s.model, s.data, s.train_size, s.cutoff_len) == ("base", "data.json", 4, 200)
    assert s.prompt_style == "alpaca" and s.data_fields == {} and s.data_seed == 0
    assert s.path("data") == str(tmp_path.resolve() / "data.json")  # the recorded absolute path
    assert s.path("model") == "base"  # not a local path when written: as given


def test_train_settings_found_next_to_the_adapter_or_empty(tmp_path):
    assert read_train_settings(tmp_path / "run" / "adapter") == TrainSettings()
    assert read_train_settings(None) == TrainSettings()
    _write(tmp_path / "run" / TRAIN_CONFIG, {"prompt_style": "chat", "data_seed": 3})
    s = read_train_settings(tmp_path / "run" / "adapter")
    assert (s.prompt_style, s.data_seed, s.cutoff_len) == ("chat", 3, None)


def test_train_settings_read_an_early_sectioned_layout():
    s = TrainSettings.from_dict({"data": {"prompt_style": "chat", "cutoff_len": 64}})
    assert (s.prompt_style, s.cutoff_len, s.data) == ("chat", 64, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"model": "m", ', "is not valid JSON"),
        ("[1, 2]", "must hold an object"),
        ('{"cutoff_len": "long"}', "cutoff_len must be an integer, got 'long'"),
        ('{"prompt_style": 3}', "prompt_style must be text, got 3"),
        ('{"data_fields": ["a"]}', "data_fields must be an object"),
    ],
)
def test_damaged_train_config_is_one_line(tmp_path, content, message):
    _write(tmp_path / "adapter" / TRAIN_CONFIG, content)
    with pytest.raises(ShearsError, match=message) as err:
        read_train_settings(tmp_path / "adapter")
    assert TRAIN_CONFIG in str(err.value) and "\n" not in str(err.value)


def test_search_best_from_a_folder_or_a_file(tmp_path):
    best = {"config": {"g0": 8}, "score": 0.5, "adapter_parameters": 10, "index": 2}
    _write(tmp_path / "s" / SEARCH_RESULTS, {"best": best, "history": [{"score": 0.9}]})
    got = read_search_best(tmp_path / "s")
    assert (got.config, got.score, got.adapter_parameters) == ({"g0": 8}, 0.5, 10)
    assert read_search_best(tmp_path / "s" / SEARCH_RESULTS) == got
    summary = read_summary(tmp_path / "s", SearchSummary)
    assert summary.best == best and summary.first_score == 0.9
    _write(tmp_path / "none" / SEARCH_RESULTS, {"best": None})
    assert read_search_best(tmp_path / "none") is None
    _write(tmp_path / "bad" / SEARCH_RESULTS, {"best": {"score": 1}})
    with pytest.raises(ShearsError, match="has no best.config"):
        read_search_best(tmp_path / "bad")


def test_summaries_absent_complete_and_damaged(tmp_path):
    assert read_summary(tmp_path, EvalSummary) is None and not complete(tmp_path, "eval")
    res = {
        "mean_accuracy": 0.25,
        "tasks": {"t": {"accuracy": 0.25}},
        "parameters": {"parameters": 10, "nonzero_parameters": 6, "sparsity": 0.4},
        "sub_adapter": {"name": "max", "config": {"g": 4}, "adapter_parameters": 3},
    }
    _write(tmp_path / EVAL_RESULTS, res)
    ev = read_summary(tmp_path, EvalSummary)
    assert complete(tmp_path, "eval")
    assert (ev.mean_accuracy, ev.nonzero_parameters, ev.sparsity) == (0.25, 6, 0.4)
    assert (ev.sub_adapter, ev.sub_adapter_config, ev.adapter_parameters) == ("max", {"g": 4}, 3)
    _write(tmp_path / RESULTS["train"], {"global_steps": 4, "final_loss": 1.5, "other": 1})
    assert read_summary(tmp_path, TrainSummary) == TrainSummary(global_steps=4, final_loss=1.5)
    _write(tmp_path / RESULTS["prune"], {"targets": {"sparsity": 0.5}})
    assert read_summary(tmp_path, PruneSummary) == PruneSummary(0.5)
    _write(tmp_path / RESULTS["prune"], "{")
    with pytest.raises(ShearsError, match="pruning report .* is not valid JSON"):
        read_summary(tmp_path, PruneSummary)


def test_eval_results_found_beside_the_adapter_or_the_search(tmp_path):
    adapter, search = tmp_path / "adapter", tmp_path / "search"
    adapter.mkdir()
    _write(search / SEARCH_RESULTS, {})
    assert find_eval_results(adapter, str(search)) is None
    _write(search / EVAL_RESULTS, {})
    assert find_eval_results(adapter, str(search)) == search / EVAL_RESULTS
    assert find_eval_results(adapter, str(search / SEARCH_RESULTS)) == search / EVAL_RESULTS
    _write(adapter / EVAL_RESULTS, {})
    assert find_eval_results(adapter, "heuristic") == adapter / EVAL_RESULTS


def test_config_record_keeps_paths_as_given_and_resolved(tmp_path, monkeypatch):
    """Every stage saves its config with its local paths also made absolute (issue 12)."""
    from shears.artifacts import RESOLVED, config_record
    from shears.export.config import ExportConfig

    (tmp_path / "adapter").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = ExportConfig(adapter="./adapter", model="org/hub-model", output_dir="out")
    rec = config_record(cfg)
    assert rec["adapter"] == "./adapter" and rec["output_dir"] == "out"
    assert rec[RESOLVED]["adapter"] == str(tmp_path / "adapter")
    assert rec[RESOLVED]["output_dir"] == str(tmp_path / "out")
    assert rec[RESOLVED]["model"] == "org/hub-model"  # a hub id stays as given
    assert rec[RESOLVED]["sub_adapter"] == "heuristic"  # a named choice too
