"""bench/study.py end to end on a tiny random model: every variant, seeds, aggregation, resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("reasoning_gym")

STUDY = Path(__file__).resolve().parents[2] / "bench" / "study.py"


@pytest.fixture
def study(monkeypatch):
    spec = importlib.util.spec_from_file_location("shears_study", STUDY)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shears_study", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    tiny = {
        "model": "unused",
        "tasks": {
            "math": {
                "train": "gym:chain_sum?max_terms=2",
                "test": "math:gym:chain_sum?max_terms=2",
            },
            "mc": {"train": "gym:family_relationships", "test": "mc:gym:family_relationships"},
        },
        "space": {"widths": [4, 3, 2]},
        "prune": {"nsamples": 2, "seqlen": 32},
        "train": {"train_size": 8, "max_steps": 2, "batch_size": 2, "cutoff_len": 400},
        "search": {"budget": 4, "max_turns": 1, "val_size": 2, "batch_size": 2, "population": 2},
        "eval": {"limit": 3, "max_new_tokens": 3, "batch_size": 2},
    }
    monkeypatch.setitem(mod.SCALES, "tiny", tiny)
    return mod


def test_study_runs_every_variant_over_seeds_and_resumes(study, tiny_folder, tmp_path, monkeypatch):
    out = tmp_path / "study"
    argv = ["--scale", "tiny", "--model", tiny_folder, "--out", str(out), "--jobs", "1"]
    argv += ["--sparsities", "0.5", "--seeds", "0", "1"]
    res = study.main(argv)
    for task in ("math", "mc"):
        rows = res["table"][task]["50"]["variants"]
        assert set(rows) == set(study.VARIANTS)
        for variant, row in rows.items():
            n = 1 if variant.endswith("_base") else 2
            assert row["accuracy"]["n"] == n, (task, variant)
            assert 0.0 <= row["accuracy"]["mean"] <= 1.0
            if n == 2:
                assert row["accuracy"]["stderr"] is not None
        # pruning halves the target weights; LoRA on the dense model keeps the dense non-zeros
        assert rows["pruned_base"]["nonzero_parameters"] < rows["dense_base"]["nonzero_parameters"]
        assert rows["lora_dense"]["nonzero_parameters"] > rows["lora_pruned"]["nonzero_parameters"]
        runs = res["table"][task]["50"]["per_seed_runs"]["1"]
        losses = runs["val_losses"]
        assert {"shears_max", "shears_heuristic", "lora_pruned", "lora_dense"} <= set(losses)
        assert all(v["loss"] > 0 for k, v in losses.items() if k != "val_examples")
        # the max sub-adapter of the super-adapter holds more parameters than its minimum
        assert (
            losses["shears_max"]["adapter_parameters"] > losses["shears_min"]["adapter_parameters"]
        )
        assert res["table"][task]["50"]["val_loss"]["lora_pruned"]["n"] == 2
        assert runs["search"]["shears_hill_climbing"]["evaluations"] >= 1
        space = json.loads(
            (out / task / "s50" / "seed1" / "lora_pruned" / "search_space.json").read_text()
        )
        assert all(g["widths"] == [4] for g in space["groups"])  # LoRA baseline: fixed r_max
    assert (out / "study_math.png").stat().st_size > 0
    table = (out / "study_table.md").read_text()
    assert "| Shears, hill-climbing |" in table and "(n=2)" in table
    assert "Paired differences" in table
    paired = res["table"]["math"]["50"]["paired_differences"]
    rows = res["table"]["math"]["50"]["variants"]
    want = (
        sum(
            rows["shears_heuristic"]["per_seed"][k]["accuracy"]
            - rows["lora_pruned"]["per_seed"][k]["accuracy"]
            for k in ("0", "1")
        )
        / 2
    )
    assert paired["shears_heuristic - lora_pruned"]["mean"] == pytest.approx(want)
    assert res["compute"]["total_core_s"] > 0

    # a second run finds every unit complete and trains nothing
    import shears.evaluate.run as eval_run
    import shears.train.run as train_run

    monkeypatch.setattr(train_run, "run", lambda *a, **k: pytest.fail("re-trained"))
    monkeypatch.setattr(eval_run, "run", lambda *a, **k: pytest.fail("re-evaluated"))
    again = study.main(argv)
    assert again["table"] == res["table"]


def test_study_rejects_bad_arguments(study, capsys):
    with pytest.raises(SystemExit):
        study.main(["--sparsities", "1.5"])
    assert "--sparsities must lie in (0, 1), got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study.main(["--tasks", "code"])
    assert "unknown task 'code'" in capsys.readouterr().err


def test_stats_mean_and_standard_error_over_seeds(study):
    s = study._stats([0.1, 0.2, 0.3])
    assert s["mean"] == pytest.approx(0.2)
    assert s["stderr"] == pytest.approx((0.01 / 3) ** 0.5)  # sample std 0.1 over sqrt(3)
    assert study._stats([0.4])["stderr"] is None and study._stats([])["mean"] is None
