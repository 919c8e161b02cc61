"""bench/deploy.py end to end at its ``tiny`` size: every variant deploys, decodes and is
profiled, and the summary is filled (the driver, not only its pure functions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from conftest import subprocess_env  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench" / "deploy.py"


def test_deploy_bench_runs_every_variant_at_tiny_size(tmp_path):
    out = tmp_path / "deploy_tiny.json"
    cmd = [sys.executable, str(BENCH), "--sizes", "tiny", "--rounds", "1", "--new", "8"]
    cmd += ["--prompt", "8", "--work", str(tmp_path / "work"), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
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
