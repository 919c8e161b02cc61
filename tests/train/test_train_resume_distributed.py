"""Fault tolerance and scale-out, in real subprocesses: a SIGKILLed run resumed with --resume ends
with the same adapter as an uninterrupted one; ``torchrun --nproc_per_node 2`` (CPU, gloo) samples
the same sub-adapter on both ranks every step and saves one adapter."""

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from nls_worker import make_config, make_examples, make_model, make_tokenizer  # noqa: E402

from conftest import subprocess_env  # noqa: E402
from shears.adapters import SearchSpace  # noqa: E402
from shears.train import last_checkpoint, train_nls  # noqa: E402

WORKER = str(HERE / "nls_worker.py")


def _adapter(folder):
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, WORKER, "--out", str(killed), "--steps", "6", "--kill-at", "4"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert last_checkpoint(killed).name == "checkpoint-4"
    assert not (killed / "adapter_model.safetensors").exists()
    # a half-written newer checkpoint (killed while saving) is ignored
    shutil.copytree(killed / "checkpoint-4", killed / "checkpoint-6")
    (killed / "checkpoint-6" / "trainer_state.json").unlink()

    tok = make_tokenizer()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): same float summation order
    try:
        res = train_nls(
            make_model(tok),
            tok,
            make_examples(),
            make_config(str(killed), max_steps=6, resume=True),
        )
        straight = tmp_path / "straight"
        train_nls(make_model(tok), tok, make_examples(), make_config(str(straight), max_steps=6))
    finally:
        torch.set_num_threads(threads)
    assert res.resumed_from.endswith("checkpoint-4") and res.global_steps == 6
    a, b = _adapter(killed), _adapter(straight)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert any(torch.count_nonzero(v) for k, v in a.items() if "lora_B" in k)
    la = json.loads((killed / "trainer_state.json").read_text())["log_history"]
    lb = json.loads((straight / "trainer_state.json").read_text())["log_history"]
    losses_a = [h["loss"] for h in la if "loss" in h]
    assert losses_a == pytest.approx([h["loss"] for h in lb if "loss" in h], abs=1e-5)
    assert len(losses_a) == 6


def test_torchrun_two_ranks_same_configs_one_adapter(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    out, rec = tmp_path / "ddp", tmp_path / "rec"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", WORKER]
    cmd += ["--out", str(out), "--steps", "3", "--record", str(rec)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((rec / "configs_rank0.json").read_text())
    r1 = json.loads((rec / "configs_rank1.json").read_text())
    assert [s for s, _ in r0] == [0, 1, 2] and r0 == r1
    tok = make_tokenizer()
    cfg = make_config("x")
    space = SearchSpace.build(make_model(tok), cfg.adapter, cfg.space)
    assert [ranks for _, ranks in r0] == [space.module_ranks(space.sample(0, s)) for s in range(3)]
    assert len(list(out.rglob("adapter_model.safetensors"))) == 1
    results = json.loads((out / "train_results.json").read_text())
    assert results["world_size"] == 2 and results["effective_batch_size"] == 8
