"""bench/deploy.py end to end at its ``tiny`` size: every variant deploys, decodes and is
profiled, and the summary is filled (the driver, not only its pure functions); then
bench/deploy_profile.py on the IRs it deployed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from conftest import subprocess_env  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> tuple[Path, dict]:
    """The work folder and result of one ``bench/deploy.py --sizes tiny`` run."""
    tmp = tmp_path_factory.mktemp("deploy_bench")
    out = tmp / "deploy_tiny.json"
    cmd = [sys.executable, str(BENCH / "deploy.py"), "--sizes", "tiny", "--rounds", "1"]
    cmd += ["--new", "8", "--prompt", "8", "--work", str(tmp / "work"), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp / "work", json.loads(out.read_text())


def test_deploy_bench_runs_every_variant_at_tiny_size(tiny_bench):
    result = tiny_bench[1]
    variants = result["sizes"]["tiny"]["variants"]
    expected = {"torch-fp32-dense", "ov-int8-weights-dense", "ov-w8a8-dense"}
    for s in (50, 70):
        expected |= {f"torch-fp32-sparse{s}", f"ov-int8-weights-sparse{s}"}
        expected |= {f"ov-w8a8-sparse-sparse{s}", f"ov-w8a8-sparse-noprop-sparse{s}"}
    assert set(variants) == expected
    assert all("error" not in row and row["decode_tokens_per_s"] > 0 for row in variants.values())
    assert all("kernels" in row for name, row in variants.items() if name.startswith("ov-"))
    summary = result["summary"]
    assert summary["size"] == "tiny" and summary["sparse_over_dense_decode_50"] > 0
    assert set(summary["goals"]) == {
        "w8a8_sparse50_over_dense_ge_1.1",
        "w8a8_sparse70_over_dense_ge_1.3",
        "sparse_best_ge_dense_best",
    }
    assert result["versions"]["openvino"]


def test_deploy_profile_reads_counters_and_bandwidth_of_deployed_irs(tiny_bench, tmp_path):
    out = tmp_path / "profile.json"
    cmd = [sys.executable, str(BENCH / "deploy_profile.py"), "--work", str(tiny_bench[0] / "tiny")]
    cmd += ["--threads", "1", "--streams", "1,2", "--new", "4", "--prompt", "8", "--rounds", "1"]
    cmd += ["--probe-gib", "0.05", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["read_bandwidth_gbps"]["1"] > 0
    assert set(result["variants"]) == {
        "ov-int8-weights-dense",
        "ov-w8a8-dense",
        "ov-w8a8-sparse-sparse50",
    }
    for v in result["variants"].values():
        assert set(v["settings"]) == {"threads1_streams1", "threads1_streams2"}
        for row in v["settings"].values():
            assert row["decode_tokens_per_s"] > 0 and row["weight_read_gbps"] > 0
            assert sum(row["time_us_by_type"].values()) == pytest.approx(
                row["profiled_step_us"], rel=1e-3
            )
            assert row["matmul_kernels"]  # the runtime named the kernels it ran


def test_deploy_profile_refuses_a_missing_variant_in_one_line(tmp_path):
    cmd = [sys.executable, str(BENCH / "deploy_profile.py"), "--work", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"error: no deployed IR in {tmp_path} for --variants "
        "ov-int8-weights-dense,ov-w8a8-dense,ov-w8a8-sparse-sparse50"
    ]
