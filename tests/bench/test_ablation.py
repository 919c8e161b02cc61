"""bench/ablation.py and bench/ablation_report.py end to end on a tiny random model: the recipe
check, every variant of a cell, the Pareto front under parameter budgets, resume by unit."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("reasoning_gym")

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(monkeypatch, name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def ablation(monkeypatch, tiny_folder):
    mod = _load(monkeypatch, "ablation")
    tiny = {
        **mod.SCALE,
        "model": tiny_folder,
        "tasks": {"math": {"kind": "math", "gym": "chain_sum?max_terms=2"}},
        "prune": {"method": "wanda", "nsamples": 2, "seqlen": 32, "seed": 0},
        "train": {"train_size": 8, "max_steps": 2, "batch_size": 2, "cutoff_len": 400},
        "space": {"widths": [4, 3, 2]},
        "search": {
            "algorithm": "hill-climbing",
            "objective": "loss",
            "budget": 3,
            "max_turns": 1,
            "val_size": 2,
            "batch_size": 2,
        },  # fmt: skip
        "eval": {"limit": 3, "max_new_tokens": 3, "batch_size": 2, "progress": False},
        "val_limit": 3,
        "sparsities": [0.5],
        "pareto_ranks": [2, 3],
        "pareto_budgets": {
            "b60": {"qkv": 3, "up": 2, "down": 2},
            "b85": {"qkv": 4, "up": 3, "down": 3},
        },
        "extras_cell": ["math", 0.5],
        "recipe_cells": {"math": 0.5},
    }
    monkeypatch.setattr(mod, "SCALE", tiny)
    return mod


def test_ablation_runs_every_unit_reports_and_resumes_from_summaries(
    ablation, monkeypatch, tmp_path, capsys
):
    report_mod = _load(monkeypatch, "ablation_report")
    out, results = tmp_path / "runs", tmp_path / "results"
    argv = ["--out", str(out), "--results", str(results), "--seeds", "0", "--jobs", "1"]
    ablation.main(argv)
    units = {json.loads(f.read_text())["unit"] for f in (results / "units").glob("*.json")}
    recipe = json.loads((results / "settings.json").read_text())["recipes"]["math"]
    assert recipe in ("pa", "ao")
    cell = f"math/{recipe}/s50/seed0"
    want = {"recipe/math/pa", "recipe/math/ao", "bases/math", f"lora_dense/math/{recipe}/seed0"}
    want |= {f"{k}/{cell}" for k in ("lora_pruned", "shears", "distill", "lora_pruned_distill",
                                     "owl", "lora_r2", "lora_r3", "pareto", "nls_maxp50")}  # fmt: skip
    assert want <= units

    rep = report_mod.main(["--results", str(results)])
    rows = rep["tables"]["math"]["s50"]["variants"]
    for v in ("lora_pruned", "shears_heuristic", "shears_hill_climbing", "distill_heuristic",
              "distill_hill_climbing", "lora_pruned_distill", "owl_heuristic", "lora_dense",
              "maxp_heuristic", "maxp_hill_climbing"):  # fmt: skip
        assert rows[v]["accuracy"]["n"] == 1, v
        assert 0.0 <= rows[v]["accuracy"]["mean"] <= 1.0
    d = rep["tables"]["math"]["s50"]["paired_differences"]["shears_hill_climbing - lora_pruned"]
    want_d = rows["shears_hill_climbing"]["per_seed"][0] - rows["lora_pruned"]["per_seed"][0]
    assert d["mean"] == pytest.approx(want_d) and d["n"] == 1
    # the Pareto front: sizes ordered min < budget 60 < heuristic <= budget 85 < max, each search
    # within its parameter budget; LoRA r2 < r3 < r4 (= lora_pruned)
    front = rep["pareto"]["math at 50 %"]
    size = {k: v["adapter_parameters"] for k, v in front["super_adapter"].items()}
    assert size["min"] < size["budget ~60 %"] < size["heuristic"] <= size["budget ~85 %"]
    assert size["budget ~85 %"] < size["max"]
    lora = {k: v["adapter_parameters"] for k, v in front["lora"].items()}
    assert lora["r2"] < lora["r3"] < lora["r4"] == size["max"]
    for b in ("b60", "b85"):
        res = json.loads(
            (out / cell / "pareto" / f"search_{b}" / "search_results.json").read_text()
        )
        assert res["best"]["adapter_parameters"] <= res["max_params"]
    assert front["seeds"] == [0]
    for sub, r in (("min", "r2"), ("max", "r4")):  # paired with the LoRA of the same size
        d = front["same_size_differences"][f"{sub} - LoRA {r}"]
        want_d = front["super_adapter"][sub]["per_seed"][0] - front["lora"][r]["per_seed"][0]
        assert d["n"] == 1 and d["mean"] == pytest.approx(want_d)
    steps_of = [v["mean"] for v in front["train_steps"].values()]
    assert steps_of == [2, 6]  # one NLS training against three LoRAs of 2 steps each
    assert (results / "ablation_pareto.png").stat().st_size > 0
    tables = (results / "ablation_tables.md").read_text()
    assert "Pareto front" in tables
    acc0 = 100 * rows["lora_pruned"]["per_seed"][0]
    assert f"| {report_mod.LABELS['lora_pruned']} | {acc0:.1f} / - / - |" in tables  # per seed

    # the max-prob NLS variant trains with --nls-max-prob 0.5; the plain one at the default
    for kind, want_p in (("nls_maxp50", 0.5), ("shears", 0.0)):
        tcfg = json.loads((out / cell / kind / "train" / "train_config.json").read_text())
        assert tcfg["nls_max_prob"] == want_p, kind
    # distillation's teacher is the dense model tuned by the same seed's dense LoRA
    for kind in ("distill", "lora_pruned_distill"):
        tcfg = json.loads((out / cell / kind / "train" / "train_config.json").read_text())
        assert tcfg["teacher_adapter"] == str(
            out.resolve() / f"math/{recipe}/dense/seed0/lora_dense/train"
        )
    # --dry-run lists every unit as done (read from the summaries), and runs nothing
    capsys.readouterr()
    ablation.main([*argv, "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert f"done  shears/{cell}" in lines and not [ln for ln in lines if ln.startswith("todo")]
    assert f": {len(lines) - 1} done, 0 to do (about 0.0 core-hours" in lines[-1]
    # per-problem outcomes: in every eval step of the summaries, agreeing with the accuracy; the
    # report's problem-by-problem comparison matches the paired difference at one seed
    shears_f = results / "units" / f"shears__{cell.replace('/', '__')}.json"
    summ = json.loads(shears_f.read_text())
    ev = summ["steps"][f"{cell}/shears/eval_heuristic"]
    assert len(ev["correct"]) == 3 and ev["correct"].count("1") / 3 == pytest.approx(ev["accuracy"])
    heur_bits = ev["correct"]
    pp = rep["tables"]["math"]["s50"]["per_problem"]["shears_hill_climbing - lora_pruned"]
    assert pp["problems"] == 3 and pp["difference"] == pytest.approx(want_d)
    # --backfill fills in summaries that predate the fields, and skips a step whose run
    # folder disagrees with the recorded accuracy
    recipe_f = results / "units" / f"recipe__math__{recipe}.json"  # trains seed 0's NLS
    rsumm = json.loads(recipe_f.read_text())
    train = rsumm["steps"][f"{cell}/shears/train"]
    assert train["steps_run"] == train["global_steps"]  # not resumed
    train.pop("steps_run")
    recipe_f.write_text(json.dumps(rsumm))
    for rec in summ["steps"].values():
        rec.pop("correct", None)
    summ["steps"][f"{cell}/shears/eval_min"] = {"accuracy": 2.0}  # no such folder: left alone
    hc = summ["steps"][f"{cell}/shears/eval_hill_climbing"]
    hc["accuracy"] += 0.5
    shears_f.write_text(json.dumps(summ))
    ablation.main([*argv, "--backfill"])
    back = json.loads(recipe_f.read_text())["steps"]
    assert back[f"{cell}/shears/train"]["steps_run"] == train["global_steps"]
    back = json.loads(shears_f.read_text())["steps"]
    assert back[f"{cell}/shears/eval_heuristic"]["correct"] == heur_bits
    assert "correct" not in back[f"{cell}/shears/eval_hill_climbing"]
    assert "correct" not in back[f"{cell}/shears/eval_min"]
    hc["accuracy"] -= 0.5
    summ["steps"].pop(f"{cell}/shears/eval_min")
    shears_f.write_text(json.dumps(summ))
    ablation.main([*argv, "--backfill"])
    assert json.loads(shears_f.read_text())["steps"][f"{cell}/shears/eval_hill_climbing"]["correct"]
    # another machine: the run folder gone, the committed summaries there -> nothing runs again
    shutil.rmtree(out)
    import shears.pipeline.run as pipeline_run

    monkeypatch.setattr(pipeline_run, "run_step", lambda *a, **k: pytest.fail("ran a step again"))
    ablation.main(argv)
    # a unit whose summary is gone runs again, with the steps it reads (here: the pruning)
    (results / "units" / f"lora_pruned__{cell.replace('/', '__')}.json").unlink()
    ran = []
    monkeypatch.setattr(pipeline_run, "run_step", lambda st, *a, **k: ran.append(st.name))
    monkeypatch.setattr(ablation, "summarize", lambda *a, **k: {"digest": "x"})
    ablation.main([*argv, "--dry-run"])
    listing = capsys.readouterr().out
    assert f"todo  lora_pruned/{cell}" in listing and ran == []
    assert "1 to do (about " in listing.splitlines()[-1]
    ablation.main(argv)
    assert ran == ["prune/s50", f"{cell}/lora_pruned/train", f"{cell}/lora_pruned/eval_val",
                   f"{cell}/lora_pruned/eval"]  # fmt: skip


def test_mcnemar_and_pooled_outcomes(monkeypatch):
    rep = _load(monkeypatch, "ablation_report")
    assert rep.mcnemar(0, 0) == 1.0 and rep.mcnemar(3, 3) == 1.0
    assert rep.mcnemar(10, 0) == pytest.approx(2 / 1024) == rep.mcnemar(0, 10)
    assert rep.mcnemar(5, 1) == pytest.approx(2 * 7 / 64)
    # seeds 0 and 1 in common (seed 2 only in a, seed 3 of a different length): pooled over both
    a = {0: "1100", 1: "1010", 2: "1111", 3: "10"}
    b = {0: "1001", 1: "0011", 3: "101"}
    p = rep.pooled(a, b)
    assert p["seeds"] == [0, 1] and p["problems"] == 8
    assert (p["a_only"], p["b_only"]) == (2, 2) and p["difference"] == 0.0
    assert rep.pooled({0: "1"}, {1: "1"}) is None


def test_pareto_front_averages_only_the_seeds_where_it_is_complete(monkeypatch):
    """A seed where one point has not landed (seed 1: LoRA r16 missing) is left out of every
    point, so both sides of the chart average the same trainings; same-size pairs by seed."""
    rep = _load(monkeypatch, "ablation_report")
    scale = {"pareto_ranks": [16], "space": {"widths": [32, 16]}}
    params = {"min": 1, "budget ~60 %": 2, "heuristic": 3, "hill-climbing": 3,
              "budget ~85 %": 4, "max": 5}  # fmt: skip
    acc = {0: 0.5, 1: 0.7, 2: 0.6}
    steps = {}
    for s in (0, 1, 2):
        cell = f"mc/ao/s50/seed{s}"
        for label, tail in rep.PARETO_SUPER.items():
            steps[f"{cell}/{tail}"] = {"accuracy": acc[s], "adapter_parameters": params[label]}
        steps[f"{cell}/lora_pruned/eval"] = {"accuracy": acc[s] + 0.1, "adapter_parameters": 5}
        if s != 1:
            steps[f"{cell}/lora_r16/eval"] = {"accuracy": acc[s] + 0.2, "adapter_parameters": 1}
    # hill-climbing lands within 2 % of r32's size at seed 2 only: paired at that seed alone
    steps["mc/ao/s50/seed2/shears/eval_hill_climbing"]["adapter_parameters"] = 5.05
    # training cost: seed 0's NLS training resumed at its half, so it timed half its steps
    units = {}
    for s in (0, 2):
        units[f"shears/mc/ao/s50/seed{s}"] = {"threads": 2}
        steps[f"mc/ao/s50/seed{s}/shears/train"] = {
            "global_steps": 160, "train_runtime_s": 100.0, "steps_run": 80 if s == 0 else 160,
        }  # fmt: skip
    front = rep.pareto(steps, units, scale, "mc", "ao", "s50")
    assert front["seeds"] == [0, 2]
    hc = front["same_size_differences"]["hill-climbing - LoRA r32"]
    assert hc["n"] == 1 and hc["mean"] == pytest.approx(-0.1)
    nls_core = front["train_core_s"]["super_adapter (one NLS training)"]
    assert nls_core["mean"] == pytest.approx((400.0 + 200.0) / 2)
    assert front["lora"]["r32"]["accuracy"]["mean"] == pytest.approx(0.65)  # not seed 1's 0.8
    assert front["super_adapter"]["max"]["accuracy"]["n"] == 2
    assert set(front["same_size_differences"]) == {
        "min - LoRA r16",
        "max - LoRA r32",
        "hill-climbing - LoRA r32",
    }
    assert front["same_size_differences"]["min - LoRA r16"]["mean"] == pytest.approx(-0.2)
    steps.pop("mc/ao/s50/seed0/pareto/eval_b60")
    steps.pop("mc/ao/s50/seed2/pareto/eval_b60")
    empty = rep.pareto(steps, {}, scale, "mc", "ao", "s50")
    assert empty["seeds"] == [] and empty["lora"] == {} and not empty["same_size_differences"]


def test_stats_and_sign_counts(monkeypatch):
    rep = _load(monkeypatch, "ablation_report")
    s = rep.stats([0.02, -0.01, 0.0])
    assert s["mean"] == pytest.approx(0.01 / 3)
    assert s["signs"] == {"positive": 1, "zero": 1, "negative": 1}
    assert rep.stats([0.5])["stderr"] is None and rep.stats([])["mean"] is None


def test_one_job_runs_units_on_the_given_torch_threads(ablation, monkeypatch, tmp_path):
    """--jobs 1 runs units in the study process: it must take --threads too (two study processes
    at torch's default of every core oversubscribed the machine)."""
    import torch

    p = ablation.plan(tmp_path / "runs", "cpu", [], {})
    seen = []
    monkeypatch.setattr(ablation, "_job", lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ablation.schedule(p, ["prune/s50"], tmp_path / "results", jobs=1, threads=1)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


def test_nls_probe_validation_only_and_reused_by_the_grid(ablation, monkeypatch, tmp_path):
    """bench/nls_probe.py trains NLS at each --probs on the grid's settings, evaluates min /
    heuristic / max on the validation split only, writes one JSON; P = 0 is the grid's own Shears
    training, and a second run reuses everything."""
    out, results = tmp_path / "runs", tmp_path / "results"
    ablation.main(["--out", str(out), "--results", str(results), "--jobs", "1", "--recipe-only"])
    monkeypatch.setattr(ablation, "RESULTS", results)
    probe = _load(monkeypatch, "nls_probe")
    result = tmp_path / "probe.json"
    argv = [
        "--out",
        str(out),
        "--cells",
        "math:0.5",
        "--probs",
        "0",
        "0.5",
        "--result",
        str(result),
    ]
    rep = probe.main(argv)
    assert json.loads(result.read_text())["cells"] == rep["cells"]
    cell = rep["cells"]["math at 50 %"]
    assert set(cell) == {"shears", "nls_maxp50", "lora_pruned"}
    assert cell["nls_maxp50"]["nls_max_prob"] == 0.5 and cell["lora_pruned"]["method"] == "lora"
    for kind in ("shears", "nls_maxp50"):
        assert set(cell[kind]["val_accuracy"]) == {"min", "heuristic", "max"}
        assert all(0 <= a <= 1 for a in cell[kind]["val_accuracy"].values())
        assert cell[kind]["loss_mean"] > 0
    recipe = ablation.choose_recipes(results, ["math"])["math"]
    train = out / f"math/{recipe}/s50/seed0"
    assert (
        json.loads((train / "nls_maxp50/train/train_config.json").read_text())["nls_max_prob"]
        == 0.5
    )
    evals = [json.loads(f.read_text()) for f in train.glob("*/eval_val_*/eval_results.json")]
    assert evals and {t["split"] for e in evals for t in e["settings"]["tasks"]} == {"validation"}
    import shears.pipeline.run as pipeline_run

    run_step = pipeline_run.run_step
    monkeypatch.setattr(pipeline_run, "run_step", lambda *a, **k: pytest.fail("ran a step again"))
    assert probe.main(argv)["cells"] == rep["cells"]
    # another learning rate: NLS and LoRA trained at it, beside the rows already in the JSON
    monkeypatch.setattr(pipeline_run, "run_step", run_step)
    lr = probe.grid_lr() * 2
    rep2 = probe.main([*argv[:4], "--probs", "0", "--lrs", str(lr), "--result", str(result)])
    cell2 = rep2["cells"]["math at 50 %"]
    assert set(cell2) == set(cell) | {f"shears_lr{lr:g}", f"lora_pruned_lr{lr:g}"}
    assert cell2[f"shears_lr{lr:g}"]["lr"] == lr == cell2[f"lora_pruned_lr{lr:g}"]["lr"]
    assert len(rep2["runs"]) == 3


def test_dry_run_estimate_reads_finished_units_of_the_same_kind(ablation, tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    for name, wall in (("shears/math/ao/s40/seed0", 600), ("shears/mc/ao/s50/seed0", 1200),
                       ("lora_dense/math/ao/seed0", 300)):  # fmt: skip
        rec = {"unit": name, "unit_wall_s": wall}
        (units / (name.replace("/", "__") + ".json")).write_text(json.dumps(rec))
    walls = ablation._finished_walls(tmp_path)
    est = ablation._unit_estimate_s
    assert est(walls, "shears/math/ao/s50/seed1") == 600  # same kind and task
    assert est(walls, "shears/other/ao/s50/seed1") == 900  # same kind
    assert est(walls, "owl/mc/ao/s50/seed0") == 700  # every finished unit
    assert est(ablation._finished_walls(tmp_path / "none"), "owl/mc/ao/s50/seed0") == 0.0


def test_steps_run_counts_only_the_steps_after_a_resumed_checkpoint(monkeypatch):
    """A resumed training's runtime covers the steps after its checkpoint; unknown -> None."""
    ablation = _load(monkeypatch, "ablation")
    assert ablation.steps_run({"global_steps": 160}) == 160
    resumed = {"global_steps": 160, "resumed_from": "/r/train/checkpoint-80/"}
    assert ablation.steps_run(resumed) == 80
    assert ablation.steps_run({"global_steps": 160, "resumed_from": "/r/elsewhere"}) is None
