"""`shears run` end to end on a tiny random model and tiny data (seconds, CPU)."""

from __future__ import annotations

import json

import pytest

from shears.cli import main
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
    import shears.prune.run as prune_run
    import shears.train.run as train_run

    def boom(*a, **k):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(prune_run, "run", boom)
    monkeypatch.setattr(train_run, "run", boom)
    again = run_pipeline(cfg)
    assert [r["test_accuracy"] for r in again["rows"]] == [
        r["test_accuracy"] for r in report["rows"]
    ]


def test_resume_after_killed_stage_runs_only_the_rest(tmp_path, tiny_folder, monkeypatch):
    cfg = _cfg(tmp_path, tiny_folder, "evaluate_dense=false")
    import shears.search.run as search_run

    real = search_run.run

    def killed(*a, **k):
        raise KeyboardInterrupt  # as if the process died during the search

    monkeypatch.setattr(search_run, "run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    run = tmp_path / "run"
    assert (run / "train" / "train_results.json").is_file()
    assert not (run / "search" / "search_results.json").exists()
    monkeypatch.setattr(search_run, "run", real)
    import shears.train.run as train_run

    monkeypatch.setattr(train_run, "run", lambda *a, **k: pytest.fail("training ran again"))
    report = run_pipeline(cfg)
    assert [r["variant"] for r in report["rows"]][-1] == "shears_searched"


def test_changed_later_stage_reruns_from_there_and_reuses_the_rest(
    tmp_path, tiny_folder, monkeypatch
):
    first = run_pipeline(_cfg(tmp_path, tiny_folder, "evaluate_dense=false"))
    import shears.prune.run as prune_run
    import shears.train.run as train_run

    monkeypatch.setattr(prune_run, "run", lambda *a, **k: pytest.fail("prune ran again"))
    monkeypatch.setattr(train_run, "run", lambda *a, **k: pytest.fail("training ran again"))
    report = run_pipeline(_cfg(tmp_path, tiny_folder, "evaluate_dense=false", "search.budget=3"))
    assert report["stages"]["reused"] == [
        "prune",
        "train",
        "eval_pruned_base",
        "eval_shears_heuristic",
    ]
    assert report["stages"]["status"]["search"] == "rerun"
    assert report["search"]["evaluations"] <= 3 < first["search"]["evaluations"] + 1
    run = tmp_path / "run"
    assert (run / ".shears-output.json").is_file()
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob(".*.old-*"))


def test_killed_rerun_resumes_with_the_new_settings(tmp_path, tiny_folder, monkeypatch):
    run_pipeline(_cfg(tmp_path, tiny_folder, "evaluate_dense=false"))
    import shears.export.run as export_run

    real = export_run.run
    monkeypatch.setattr(export_run, "run", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    cfg = _cfg(tmp_path, tiny_folder, "evaluate_dense=false", "search.budget=3")
    with pytest.raises(OSError):
        run_pipeline(cfg)
    monkeypatch.setattr(export_run, "run", real)
    report = run_pipeline(cfg)  # the search of the new settings is reused, export runs
    assert "search" in report["stages"]["reused"]
    assert report["stages"]["status"]["export"] in ("rerun", "resume")


@pytest.mark.parametrize("where", ["cwd", "foreign"])
def test_overwrite_never_deletes_a_folder_shears_did_not_write(
    where, tmp_path, tiny_folder, monkeypatch, capsys
):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "notes.txt").write_text("mine")
    monkeypatch.chdir(proj if where == "cwd" else tmp_path)
    run_dir = "." if where == "cwd" else str(proj)
    rc = main(["run", f"run_dir={run_dir}", f"model={tiny_folder}", *TINY, "--overwrite"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" not in err[0].split(";")[-1]
    assert [p.name for p in proj.iterdir()] == ["notes.txt"]
    assert (proj / "notes.txt").read_text() == "mine"


def test_file_task_holds_out_validation_records(tmp_path, tiny_folder):
    rows = [
        {"instruction": f"What is {i} + 1?", "output": f"The answer is {i + 1}", "answer": i + 1}
        for i in range(12)
    ]
    task = tmp_path / "my_train.json"
    task.write_text(json.dumps(rows))
    test = tmp_path / "my_test.json"
    test.write_text(json.dumps(rows[:2]))
    before = task.read_bytes()
    extra = (f"task={task}", f"eval_tasks=[math:{test}]", "evaluate_dense=false")
    report = run_pipeline(_cfg(tmp_path, tiny_folder, *extra, "train.train_size=0"))
    assert report["validation"] == {
        "source": str(task),
        "records": [10, 12],
        "held_out_from_task": True,
    }
    train = json.loads((tmp_path / "run" / "train" / "train_config.json").read_text())
    assert train["train_size"] == 10
    assert task.read_bytes() == before


def test_file_task_too_small_to_hold_out_fails_before_any_stage(tmp_path, tiny_folder, capsys):
    task = tmp_path / "t.json"
    task.write_text(json.dumps([{"instruction": "q", "output": "a", "answer": 1}] * 2))
    rc = main(
        ["run", f"run_dir={tmp_path / 'r'}", f"model={tiny_folder}", f"task={task}",
         f"eval_tasks=[math:{task}]", *TINY]
    )  # fmt: skip
    assert rc == 2
    assert "too few" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


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
    assert "model: smollm2-135m" in out and "sparsity: 0.4" in out


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
