"""`shears run` end to end on a tiny random model and tiny data (seconds, CPU)."""

from __future__ import annotations

import json

import pytest

from shears.cli import main
from shears.errors import ShearsError
from shears.pipeline import load_run_config, run_pipeline

TINY = [
    "prune.nsamples=2",
    "prune.seqlen=32",
    "train.train_size=8",
    "train.max_steps=2",
    "train.batch_size=2",
    "train.cutoff_len=400",
    "train.save_steps=1",
    "train.space.widths=[4,3,2]",
    "search.budget=4",
    "search.max_turns=1",
    "search.val_size=2",
    "search.batch_size=2",
    "eval.limit=2",
    "eval.max_new_tokens=3",
    "eval.batch_size=2",
]


def _cfg(tmp_path, model, *extra):
    return load_run_config(None, [f"run_dir={tmp_path / 'run'}", f"model={model}", *TINY, *extra])


def test_run_end_to_end_and_resume(tmp_path, tiny_folder, monkeypatch):
    cfg = _cfg(tmp_path, tiny_folder)
    report = run_pipeline(cfg)
    run = tmp_path / "run"
    for f in (
        "run_config.json",
        "report.json",
        "report.md",
        "accuracy.png",
        "prune/prune_report.json",
        "train/adapter_model.safetensors",
        "search/search_results.json",
        "export/export_results.json",
        "eval/shears_searched/eval_results.json",
    ):
        assert (run / f).is_file(), f
    variants = [r["variant"] for r in report["rows"]]
    assert variants == ["dense_base", "pruned_base", "shears_heuristic", "shears_searched"]
    dense, pruned = report["rows"][0], report["rows"][1]
    assert pruned["nonzero_parameters"] < dense["nonzero_parameters"]
    assert report["rows"][2]["adapter_parameters"] > 0
    assert "| Shears, searched sub-adapter |" in (run / "report.md").read_text()
    times = json.loads((run / "stage_times.json").read_text())
    assert {"prune", "train", "search", "export"} <= set(times)

    # a resumed run skips finished stages: make every stage entry point fail if called
    import shears.prune.api as prune_api
    import shears.train.nls as nls

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(prune_api, "run_prune", boom)
    monkeypatch.setattr(nls, "run_train", boom)
    again = run_pipeline(cfg)
    assert [r["test_accuracy"] for r in again["rows"]] == [
        r["test_accuracy"] for r in report["rows"]
    ]


def test_resume_after_killed_stage_runs_only_the_rest(tmp_path, tiny_folder, monkeypatch):
    cfg = _cfg(tmp_path, tiny_folder, "evaluate_dense=false")
    import shears.search.run as search_run

    real = search_run.run_search

    def killed(*a, **k):
        raise KeyboardInterrupt  # as if the process died during the search

    monkeypatch.setattr(search_run, "run_search", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    run = tmp_path / "run"
    assert (run / "train" / "train_results.json").is_file()
    assert not (run / "search" / "search_results.json").exists()
    monkeypatch.setattr(search_run, "run_search", real)
    import shears.train.nls as nls

    monkeypatch.setattr(nls, "run_train", lambda *a, **k: pytest.fail("training ran again"))
    report = run_pipeline(cfg)
    assert [r["variant"] for r in report["rows"]][-1] == "shears_searched"


def test_changed_config_refused_without_overwrite(tmp_path, tiny_folder):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run_config.json").write_text(json.dumps({"seed": 99}))
    with pytest.raises(ShearsError, match="another config"):
        run_pipeline(_cfg(tmp_path, tiny_folder))


@pytest.mark.parametrize(
    "override, message",
    [
        ("bogus=1", "unknown config key 'bogus'"),
        ("train.nope=1", "train.nope"),
        ("train.lr=abc", "'train.lr' must be float"),
        ("prune.sparsity=1.5", "sparsity"),
        ("search.algorithm=magic", "magic"),
        ("train.model=x", "set by the pipeline"),
        ("eval.tasks=[x]", "set by the pipeline"),
    ],
)
def test_config_errors_before_work(tmp_path, override, message, capsys):
    rc = main(["run", f"run_dir={tmp_path / 'r'}", override])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started


def test_missing_model_named(tmp_path, capsys):
    rc = main(["run", f"run_dir={tmp_path / 'r'}", f"model={tmp_path / 'missing'}"])
    assert rc == 2
    assert "missing" in capsys.readouterr().err


def test_print_default(capsys):
    assert main(["run", "--print-default"]) == 0
    out = capsys.readouterr().out
    assert "model: smollm2-135m" in out and "sparsity: 0.5" in out


def test_missing_task_file_fails_before_any_stage(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    rc = main(
        ["run", f"run_dir={tmp_path / 'r'}", f"task={missing}", "eval_tasks=[math:gym:chain_sum]"]
    )
    assert rc == 2
    assert "nope.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_baselines_train_fixed_rank_lora_on_pruned_and_dense(tmp_path, tiny_folder):
    cfg = _cfg(tmp_path, tiny_folder, "baselines=true", "evaluate_dense=false")
    report = run_pipeline(cfg)
    rows = {r["variant"]: r for r in report["rows"]}
    assert {"lora_pruned", "lora_dense"} <= set(rows)
    run = tmp_path / "run"
    for name in ("lora_pruned", "lora_dense"):
        space = json.loads((run / "baselines" / name / "search_space.json").read_text())
        assert all(g["widths"] == [4] for g in space["groups"])  # fixed rank r_max
    # LoRA on the dense model keeps the dense base's non-zeros; on the pruned one, the pruned base's
    assert rows["lora_dense"]["nonzero_parameters"] > rows["lora_pruned"]["nonzero_parameters"]
    assert (
        rows["lora_pruned"]["adapter_parameters"] > rows["shears_heuristic"]["adapter_parameters"]
    )
