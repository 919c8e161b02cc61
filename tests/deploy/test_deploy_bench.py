"""bench/deploy.py's summary: the ratios the issue asks for, from measured rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "deploy.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_deploy", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(rate, sparse_layers=0):
    return {"decode_tokens_per_s": rate, "kernels": {"sparse_kernel_layers": sparse_layers}}


def test_summary_ratios_at_the_largest_size(bench):
    variants = {
        "torch-fp32-dense": _row(30.0),
        "ov-int8-weights-dense": _row(69.0),
        "ov-w8a8-dense": _row(14.0),
        "ov-w8a8-sparse-sparse50": _row(16.0, 154),
        "ov-w8a8-sparse-noprop-sparse50": _row(14.5),
        "ov-w8a8-sparse-sparse70": {"error": "deploy failed"},
        "ov-int8-weights-sparse50": _row(68.0),
    }
    tiny = {"ov-w8a8-dense": _row(1.0), "ov-w8a8-sparse-sparse50": _row(9.0)}
    s = bench.summary({"tiny": {"variants": tiny}, "synthetic-1b": {"variants": variants}})
    assert s["size"] == "synthetic-1b"
    assert s["sparse_over_dense_decode_50"] == pytest.approx(16 / 14, abs=1e-3)
    assert s["property_over_noprop_decode_50"] == pytest.approx(16 / 14.5, abs=1e-3)
    assert s["sparse_kernel_layers_50"] == 154
    assert s["sparse_over_dense_decode_70"] is None  # a failed variant is no number
    assert s["best_dense_decode"] == 69.0 and s["best_sparse_decode"] == 68.0
    assert s["goals"] == {
        "w8a8_sparse50_over_dense_ge_1.1": True,
        "w8a8_sparse70_over_dense_ge_1.3": False,
        "sparse_best_ge_dense_best": False,
    }


def test_accuracy_deltas_mark_drops_over_one_point(bench):
    variants = {
        "torch-fp32-sparse50": {"accuracy": {"gsm": 0.30}, "perplexity": {"ppl": 20.0}},
        "ov-int8-weights-sparse50": {"accuracy": {"gsm": 0.295}, "perplexity": {"ppl": 20.5}},
        "ov-w8a8-sparse-sparse50": {"accuracy": {"gsm": 0.20}},
        "ov-w8a8-dense": {"accuracy": {"gsm": 0.5}},  # no PyTorch dense row: skipped
    }
    d = bench.accuracy_deltas(variants)
    assert d["ov-int8-weights-sparse50"] == {
        "points": {"gsm": -0.5},
        "perplexity_ratio": {"ppl": 1.025},
        "recommended": True,
    }
    assert d["ov-w8a8-sparse-sparse50"] == {
        "points": {"gsm": -10.0},
        "perplexity_ratio": {},
        "recommended": False,
    }
    assert "ov-w8a8-dense" not in d
