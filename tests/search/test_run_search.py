"""End to end: `shears search` on a tiny saved model + super-adapter + JSON data."""

import json

import pytest
import torch
from search_helpers import save_super_adapter

from shears.cli import main


@pytest.fixture
def setup(tmp_path_factory, tiny_tokenizer):
    tok = tiny_tokenizer
    root = tmp_path_factory.mktemp("search_e2e")
    save_super_adapter(root, tok)
    rows = [
        {
            "instruction": f"What is {i} + {i}?",
            "output": f"The answer is {2 * i}.",
            "answer": str(2 * i),
        }
        for i in range(12)
    ]
    (root / "data.json").write_text(json.dumps(rows))
    train_cfg = {
        "model": str(root / "model"),
        "data": str(root / "data.json"),
        "train_size": 6,
        "prompt_style": "alpaca",
        "cutoff_len": 200,
    }
    (root / "adapter" / "train_config.json").write_text(json.dumps(train_cfg))
    return root


def run(setup, out, *extra):
    return main(
        [
            "search",
            "--adapter",
            str(setup / "adapter"),
            "--output-dir",
            str(out),
            "--val-size",
            "4",
            "--batch-size",
            "2",
            *extra,
        ]
    )


def test_search_writes_results_and_plots(setup, tmp_path):
    out = tmp_path / "s"
    assert run(setup, out, "--budget", "15", "--screen-top-k", "3") == 0
    res = json.loads((out / "search_results.json").read_text())
    assert res["algorithm"] == "hill-climbing" and res["objective"] == "loss"
    assert res["budget"] == 15 and 1 < res["evaluations"] <= 15
    assert len(res["history"]) == res["evaluations"]
    h = res["history"][0]
    assert set(h) >= {"config", "score", "adapter_parameters"}
    best = res["best"]
    assert best["score"] == min(e["score"] for e in res["history"])
    assert set(best["config"]) == {g for g in h["config"]} and best["adapter_parameters"] > 0
    assert res["data"]["prompt_style"] == "alpaca" and res["validation_examples"] == 4
    assert (out / "search_progress.png").stat().st_size > 0
    assert (out / "search_ranks.png").stat().st_size > 0
    # no overwrite without --overwrite
    assert run(setup, out, "--budget", "2") == 2
    assert run(setup, out, "--budget", "2", "--overwrite") == 0


def test_heuristic_is_scored_once(setup, tmp_path):
    assert run(setup, tmp_path / "h", "--algorithm", "heuristic") == 0
    res = json.loads((tmp_path / "h" / "search_results.json").read_text())
    assert res["evaluations"] == 1 and set(res["best"]["config"].values()) == {6}


def test_killed_search_resumes_to_the_same_result(setup, tmp_path, monkeypatch):
    from shears.search.answer_loss import AnswerLossObjective

    args = ("--budget", "12", "--screen-top-k", "0", "--patience", "0")
    assert run(setup, tmp_path / "ref", *args) == 0
    want = json.loads((tmp_path / "ref" / "search_results.json").read_text())

    orig = AnswerLossObjective.__call__
    calls = {"n": 0}

    def dying(self, config):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # the CLI's answer to a kill; nothing after it runs
        return orig(self, config)

    monkeypatch.setattr(AnswerLossObjective, "__call__", dying)
    assert run(setup, tmp_path / "k", *args) == 130
    assert not (tmp_path / "k" / "search_results.json").exists()
    monkeypatch.setattr(AnswerLossObjective, "__call__", orig)
    assert run(setup, tmp_path / "k", *args, "--resume") == 0
    got = json.loads((tmp_path / "k" / "search_results.json").read_text())
    assert got["best"] == want["best"]
    assert [e["config"] for e in got["history"]] == [e["config"] for e in want["history"]]
    assert got["resumed_evaluations"] == 5 and got["objective_calls"] == want["evaluations"] - 5


def test_bad_input_fails_clearly(setup, tmp_path, caplog):
    assert run(setup, tmp_path / "a", "--algorithm", "annealing") == 2
    assert "algorithm 'annealing' is not known" in caplog.text
    assert run(setup, tmp_path / "b", "--budget", "0") == 2
    assert "budget must be >= 1" in caplog.text
    space = json.loads((setup / "adapter" / "search_space.json").read_text())
    space["groups"][0]["modules"] = ["model.layers.0.mlp.gate_proj"]
    (tmp_path / "space.json").write_text(json.dumps(space))
    assert run(setup, tmp_path / "c", "--space", str(tmp_path / "space.json")) == 2
    assert "does not match the adapter" in caplog.text
    space["groups"][0]["modules"] = ["model.layers.0.self_attn.q_proj"]
    for g in space["groups"]:
        g["widths"] = [16, 8]
    (tmp_path / "space.json").write_text(json.dumps(space))
    assert run(setup, tmp_path / "d", "--space", str(tmp_path / "space.json")) == 2
    assert "r_max 8" in caplog.text
    assert run(setup, tmp_path / "e", "--data-split", "test") == 2
    assert "not allowed" in caplog.text
    # nothing was written by the failed runs
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_the_result_is_what_the_file_holds(setup, tmp_path):
    """``run`` returns a SearchResult; ``to_dict()`` is ``search_results.json``, keys in order;
    keys of other kinds of search (``pareto_front``: two objectives) are left out."""
    from shears.search import SearchConfig, SearchResult, run_search

    out = tmp_path / "r"
    cfg = SearchConfig(
        adapter=str(setup / "adapter"), output_dir=str(out), val_size=4, batch_size=2, budget=4
    )
    res = run_search(cfg)
    assert isinstance(res, SearchResult)
    saved = json.loads((out / "search_results.json").read_text())
    assert list(saved) == list(res.to_dict()) and saved == res.to_dict()
    assert "pareto_front" not in saved and saved["compute"]["objective_calls"] == 4
    assert res.best.config == saved["best"]["config"] and res.history[0].index == 0


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_precision_runs_candidates_under_autocast(setup, tmp_path, monkeypatch, precision):
    """``--precision bf16``: the candidates' forward passes run under bf16 autocast (a forward
    hook sees it), recorded in the results; ``fp32``: none."""
    import shears.search.run as search_run

    seen: list[bool] = []
    load = search_run.load

    def spied(cfg, plan, *rest):
        objective = load(cfg, plan, *rest)
        objective.model.register_forward_hook(
            lambda *a: seen.append(torch.is_autocast_enabled("cpu"))
        )
        return objective

    monkeypatch.setattr(search_run, "load", spied)
    out = tmp_path / precision
    assert run(setup, out, "--budget", "3", "--screen-top-k", "2", "--precision", precision) == 0
    res = json.loads((out / "search_results.json").read_text())
    assert seen and set(seen) == {precision == "bf16"}
    assert res["precision"] == precision
    assert res["autocast"] == ("bf16-autocast" if precision == "bf16" else "off")
    assert res["best"]["score"] > 0
