"""Data-parallel search in real subprocesses: ``torchrun --nproc_per_node 2 -m shears search``
(CPU, gloo) walks the same path as one process (same configs, same scores, same best), writes its
folder once from the main process, and resumes from its own log. Plus the pure combine functions."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from search_helpers import save_super_adapter

from conftest import subprocess_env
from shears.search.answer_loss import sum_in_order
from shears.search.screening import sum_rank_gradients

# what depends on how the work ran, not on what it computed
RUN_KEYS = {"time_s", "peak_rss_mib", "peak_cuda_mib", "settings", "resolved", "compute"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny saved model, a random super-adapter (non-zero B) trained on ``data.json``'s first 6
    records; the validation examples are the next ones."""
    from conftest import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    root = tmp_path_factory.mktemp("search_dp")
    save_super_adapter(root, tok)
    rows = [
        {"instruction": f"What is {i} + {i}?" + "!" * (i % 4), "output": f"It is {2 * i}."}
        | {"answer": str(2 * i)}
        for i in range(14)
    ]
    (root / "data.json").write_text(json.dumps(rows))
    train = {"model": str(root / "model"), "data": str(root / "data.json"), "train_size": 6}
    (root / "adapter" / "train_config.json").write_text(json.dumps(train | {"cutoff_len": 200}))
    return root


def _search(root: Path, out: Path, ranks: int, *extra: str) -> subprocess.CompletedProcess:
    """``shears search`` in ``ranks`` processes (1: plain python; 2: torchrun, gloo)."""
    args = ["search", "--adapter", str(root / "adapter"), "--output-dir", str(out)]
    args += ["--val-size", "7", "--batch-size", "2", "--seed", "3", *extra]  # 4 batches
    if ranks == 1:
        cmd = [sys.executable, "-m", "shears", *args]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(ranks), "-m", "shears", *args]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-8000:]
    return proc


def _results(out: Path) -> dict:
    res = json.loads((out / "search_results.json").read_text())
    for ev in res["history"]:
        ev.pop("time_s")
        ev.pop("resumed")
    return {k: v for k, v in res.items() if k not in RUN_KEYS}


def _log(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in rec.items() if k != "time_s"} for rec in lines]


def test_two_ranks_walk_the_same_path_write_once_and_resume(setup, tmp_path):
    """Hill-climbing on the loss objective with first-order screening (gradients gathered too):
    a 2-rank search stopped by its budget equals the first evaluations of one process, exactly;
    resumed on 2 ranks with a larger budget it replays its log and ends where one process ends."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--screen-top-k", "2", "--max-turns", "3", "--patience", "0"]
    _search(setup, one, 1, *extra, "--budget", "8")
    proc = _search(setup, two, 2, *extra, "--budget", "4")
    assert "eval 0:" in proc.stderr and proc.stderr.count("eval 3:") == 1  # main process only
    a, b = _results(one), _results(two)
    assert b["evaluations"] == 4 and b["stop_reason"] == "budget"
    assert b["history"] == a["history"][:4]  # configs, scores (loss floats), sizes: exactly
    assert _log(two) == _log(one)[:5]  # header + 4 lines, each written once
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders

    _search(setup, two, 2, *extra, "--budget", "8", "--resume")
    b = _results(two)
    assert b.pop("resumed_evaluations") == 4 and a.pop("resumed_evaluations") == 0
    assert b.pop("objective_calls") == a.pop("objective_calls") - 4
    assert b == a  # best, history, trajectory, stop reason: the one-process search's
    assert _log(two) == _log(one)


def test_two_ranks_math_objective_same_accuracies(setup, tmp_path):
    """The math objective shares its generation batches: same accuracies, same path."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--objective", "math", "--max-new-tokens", "3", "--budget", "3", "--no-plots"]
    _search(setup, one, 1, *extra)
    _search(setup, two, 2, *extra)
    assert _results(two) == _results(one)
    assert _log(two) == _log(one)


def test_sum_in_order_is_the_one_process_accumulation():
    values = [0.1, 1e16, -1e16, 0.2, 3.3]
    total = 0.0
    for v in values:
        total += v
    assert sum_in_order(values) == total  # not math.fsum / compensated sum()
    assert sum_in_order([]) == 0.0


def test_sum_rank_gradients_adds_batches_in_order():
    parts = [
        (1.5, {"a": torch.tensor([1.0, 2.0])}),
        (2.0, {"a": torch.tensor([0.5, 0.0]), "b": torch.tensor([1.0, 1.0, 1.0])}),
    ]
    total, grads = sum_rank_gradients({"a": 2, "b": 3, "c": 1}, parts)
    assert total == 3.5
    assert grads["a"].tolist() == [1.5, 2.0] and grads["b"].tolist() == [1.0, 1.0, 1.0]
    assert grads["c"].tolist() == [0.0] and grads["a"].dtype == torch.float32
