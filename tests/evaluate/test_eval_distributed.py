"""Data-parallel evaluation in real subprocesses: ``torchrun --nproc_per_node 2 -m shears eval``
(CPU, gloo) writes the same results as one process (accuracies, predictions and log-likelihoods
equal, perplexity within float tolerance), and writes them once."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eval_helpers import save_tiny_model, tiny_lm, write_json

from conftest import subprocess_env

# numbers that depend on how the work was run, not on what it computed
RUN_KEYS = {"time_s", "total_time_s", "memory", "world_size", "settings", "versions"}


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    """A tiny model folder and one task of each in-process kind, several batches each."""
    model = save_tiny_model(tiny_lm(tiny_tokenizer), tiny_tokenizer, tmp_path / "model")
    math = [
        {"instruction": f"What is {i} plus {i + 2}?", "answer": str(2 * i + 2)} for i in range(7)
    ]
    mc = [
        {"question": f"Pick {w}" + "!" * i, "choices": [w, "blue", "a longer one"], "label": i % 3}
        for i, w in enumerate(["red", "cat", "sun", "tree", "sea"])
    ]
    (tmp_path / "held.txt").write_text(" ".join(f"word{i} and more text" for i in range(80)))
    tasks = [
        f"math:{write_json(tmp_path / 'math.json', math)}",
        f"mc:{write_json(tmp_path / 'mc.json', mc)}",
        f"mc_gen:{tmp_path / 'mc.json'}",
        f"ppl:{tmp_path / 'held.txt'}",
    ]
    args = ["eval", "--model", model, "--tasks", ",".join(tasks), "--batch-size", "2"]
    args += ["--max-new-tokens", "6", "--ppl-seqlen", "32", "--no-progress"]
    return tmp_path, args


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _strip(results: dict) -> dict:
    out = {k: v for k, v in results.items() if k not in RUN_KEYS}
    out["tasks"] = {
        name: {k: v for k, v in m.items() if k not in RUN_KEYS} for name, m in out["tasks"].items()
    }
    return out


def test_torchrun_two_ranks_same_results_written_once(setup):
    tmp, args = setup
    one, two = tmp / "one", tmp / "two"
    _run([sys.executable, "-m", "shears", *args, "--output-dir", str(one)])
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    proc = _run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "shears"]
        + [*args, "--output-dir", str(two)]
    )
    assert proc.stdout.count('"mean_accuracy"') == 1  # the summary: main process only
    a = json.loads((one / "eval_results.json").read_text())
    b = json.loads((two / "eval_results.json").read_text())
    assert a["world_size"] == 1 and b["world_size"] == 2
    ppl_a, ppl_b = (
        a["tasks"]["held_ppl"].pop("perplexity"),
        b["tasks"]["held_ppl"].pop("perplexity"),
    )
    assert ppl_b == pytest.approx(ppl_a, rel=1e-6)
    assert _strip(b) == _strip(a)  # accuracies, counts, parameters, precision: exactly equal
    assert (two / "predictions.jsonl").read_text() == (one / "predictions.jsonl").read_text()
    assert {p.name for p in two.iterdir() if not p.name.startswith(".")} == {
        "eval_results.json",
        "predictions.jsonl",
    }
    assert not [p for p in tmp.iterdir() if p.name.startswith(".two")]  # no temp leftovers
