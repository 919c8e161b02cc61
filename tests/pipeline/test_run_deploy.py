"""`shears run` with a ``deploy:`` section: off by default (plans and digests as before), a
``deploy`` step after export when given (the pruned base + the searched sub-adapter as OpenVINO
IR in ``<run>/deploy``), reported and reused like every other step."""

from __future__ import annotations

import json

import pytest
from test_run import _cfg

from shears.artifacts import RUN_CONFIG, complete
from shears.cli import main
from shears.config import to_dict
from shears.pipeline import load_run_config, run_pipeline
from shears.pipeline.ledger import Ledger
from shears.pipeline.plan import build_plan, plan_steps

# The step digests of the default plan (``run_dir=runs/x``) as computed before the deploy
# section existed: adding it must not re-run any finished stage of an existing run.
DEFAULT_DIGESTS = {
    "prune": "67b596b8f2a6386b",
    "train": "012d6477caa7703c",
    "search": "205243acd0cd57b4",
    "eval_dense_base": "1c2e3a069397e9da",
    "eval_pruned_base": "7aa549317c1819be",
    "eval_shears_heuristic": "b6f229c2df9e5a0e",
    "eval_shears_searched": "13d46c59af4c3c16",
    "export": "cf884a599ce0006e",
}


# the embedded default's settings when those digests were taken (the demo default moved since)
PINNED = [
    "prune.sparsity=0.5",
    "train.train_on_inputs=true",
    "train.lr=0.0003",
    "train.nls_max_prob=0",
]


def _digests(*overrides: str) -> dict[str, str]:
    cfg = load_run_config(None, ["run_dir=runs/x", *PINNED, *overrides])
    return {st.name: st.digest for st in plan_steps(build_plan(cfg))}


def test_default_plan_has_no_deploy_and_unchanged_digests():
    assert load_run_config(None, ["run_dir=runs/x"]).deploy is None
    assert build_plan(load_run_config(None, ["run_dir=runs/x"])).deploy is None
    assert _digests() == DEFAULT_DIGESTS
    assert _digests("deploy=null") == DEFAULT_DIGESTS


def test_plan_with_deploy_wires_prune_train_and_search():
    cfg = load_run_config(None, ["run_dir=runs/x", "seed=3", "deploy.precision=fp32"])
    d = build_plan(cfg).deploy
    assert (d.model, d.adapter, d.output_dir) == ("runs/x/prune", "runs/x/train", "runs/x/deploy")
    assert d.sub_adapter == "runs/x/search/search_results.json"
    assert (d.precision, d.seed, d.overwrite) == ("fp32", 3, False)
    on = _digests("deploy.precision=fp32")
    assert list(on)[-2:] == ["export", "deploy"]
    assert {k: v for k, v in on.items() if k != "deploy"} == DEFAULT_DIGESTS  # others unchanged
    # it reads the search (and train, prune): a changed search changes its digest; an eval not
    changed = _digests("deploy.precision=fp32", "search.budget=7")
    assert changed["deploy"] != on["deploy"]
    assert _digests("deploy.precision=fp32", "eval.limit=3")["deploy"] == on["deploy"]
    assert _digests("deploy.precision=int8-weights")["deploy"] != on["deploy"]
    assert build_plan(load_run_config(None, ["run_dir=runs/x", "deploy={}"])).deploy.precision == (
        "int8-weights"  # an empty section deploys with DeployConfig's defaults
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ("deploy.nope=1", "deploy.nope"),
        ("deploy.precision=int4", "deploy section: unknown precision 'int4'"),
        ("deploy.merge=plain", "deploy.merge"),
        ("deploy.nsamples=0", "deploy.nsamples must be >= 1"),
        ("deploy.model=x", "deploy.model is set by the pipeline"),
        ("deploy.output_dir=x", "deploy.output_dir is set by the pipeline"),
        ("deploy=3", "deploy"),
    ],
)
def test_bad_deploy_section_one_line_before_work(tmp_path, override, message, capsys):
    rc = main(["run", f"run_dir={tmp_path / 'r'}", override])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()  # nothing was started


def test_run_config_recorded_before_deploy_existed_is_adopted(tmp_path):
    from shears.pipeline.run import _adopt_legacy

    run = tmp_path / "run"
    cfg = load_run_config(None, [f"run_dir={run}"])
    (run / "prune").mkdir(parents=True)
    (run / "prune" / "prune_report.json").write_text("{}")
    old = to_dict(cfg)
    del old["deploy"]  # a run_config.json of a version without the deploy section
    (run / RUN_CONFIG).write_text(json.dumps(old))
    ledger, steps = Ledger(run / "stages.json"), plan_steps(build_plan(cfg))
    _adopt_legacy(run, cfg, ledger, steps)
    assert ledger.stages == {"prune": {"digest": steps[0].digest, "done": True}}


DEPLOY = ["deploy.precision=fp32", "deploy.inference_precision=f32", "deploy.verify_tokens=2"]


def test_run_with_deploy_end_to_end_reported_and_reused(tmp_path, tiny_folder, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    cfg = _cfg(tmp_path, tiny_folder, "evaluate_dense=false", *DEPLOY)
    report = run_pipeline(cfg)
    run = tmp_path / "run"
    out = run / "deploy"
    assert complete(out, "deploy")
    assert (out / "openvino_model.xml").is_file() and (out / "deploy_config.json").is_file()
    results = json.loads((out / "deploy_results.json").read_text())
    assert results["adapter"]["path"] == str(run / "train")
    assert results["adapter"]["sub_adapter"] == "search"  # the searched sub-adapter
    assert results["model"] == str(run / "prune")
    d = report["deploy"]
    assert d["precision"] == "fp32" and d["output_dir"] == str(out)
    assert d["bytes"]["ir_bin"] > 0 and d["matmul_layers"] > 0
    assert d["sparse_kernel_layers"] is not None
    assert d["ir_sparsity"] > 0.2  # the pruned base's zeros survive in the IR
    assert d["verification"]["tokens"] == 2
    assert "deploy" in report["stage_times_s"]
    md = (run / "report.md").read_text()
    assert "## Deploy" in md and "fp32" in md
    assert json.loads((run / "report.json").read_text())["deploy"] == d

    # a second run reuses it (and every other step)
    import shears.deploy.run as deploy_run

    real = deploy_run.run
    monkeypatch.setattr(deploy_run, "run", lambda *a, **k: pytest.fail("deploy ran again"))
    again = run_pipeline(cfg)
    assert again["stages"]["status"]["deploy"] == "reuse"
    assert set(again["stages"]["status"].values()) == {"reuse"}
    assert again["deploy"] == d

    # another precision re-runs only the deploy step
    monkeypatch.setattr(deploy_run, "run", real)
    other = _cfg(tmp_path, tiny_folder, "evaluate_dense=false", *DEPLOY, "deploy.verify=false")
    third = run_pipeline(other)
    status = third["stages"]["status"]
    assert status["deploy"] == "rerun"
    assert {k for k, v in status.items() if v != "reuse"} == {"deploy"}
    assert third["deploy"]["verification"] is None
    assert "## Deploy" in (run / "report.md").read_text()


def test_report_without_deploy_has_no_deploy_section():
    from shears.pipeline.report import _deploy_lines

    assert _deploy_lines(None) == [] and _deploy_lines({"precision": None}) == []
