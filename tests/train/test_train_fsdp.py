"""FSDP2 training, in real subprocesses (``accelerate launch`` with
``examples/accelerate/fsdp_cpu.yaml``: 2 CPU processes over gloo): the adapter equals a
single-process run with the same seed and global batch, a SIGKILLed run resumed with --resume
equals an uninterrupted one, and one whole adapter file is written. DeepSpeed ZeRO-2
(``examples/accelerate/deepspeed_zero2.yaml``) where it is installed."""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from nls_worker import make_config, make_examples, make_model, make_tokenizer  # noqa: E402

from conftest import subprocess_env  # noqa: E402
from shears.adapters import ElasticLoraConfig  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train import last_checkpoint, train_nls  # noqa: E402
from shears.train.sharding import setup_fsdp  # noqa: E402
from shears.train.trainer import ADAPTER_CKPT  # noqa: E402

ROOT = HERE.parents[1]
WORKER = str(HERE / "nls_worker.py")
CONFIGS = ROOT / "examples" / "accelerate"
CONFIG = str(CONFIGS / "fsdp_cpu.yaml")
ACCELERATE = shutil.which("accelerate", path=str(Path(sys.executable).parent))

needs_launcher = pytest.mark.skipif(ACCELERATE is None, reason="accelerate launcher not installed")


def _launch(out: Path, *args: str, port: int, config: str = CONFIG) -> subprocess.CompletedProcess:
    cmd = [ACCELERATE, "launch", "--config_file", config, "--num_processes", "2"]
    cmd += ["--main_process_port", str(port), WORKER, "--out", str(out), *args]
    return subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def _adapter(folder) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def _losses(folder) -> list[float]:
    log = json.loads((Path(folder) / "trainer_state.json").read_text())["log_history"]
    return [h["loss"] for h in log if "loss" in h]


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.allclose(a[k], b[k], atol=atol), (k, (a[k] - b[k]).abs().max())


def test_setup_fsdp_refuses_fsdp1_and_leaves_other_runs(monkeypatch):
    from accelerate.utils import DistributedType

    fsdp1 = SimpleNamespace(fsdp_version=1)
    state = SimpleNamespace(fsdp_plugin=fsdp1, distributed_type=DistributedType.FSDP)
    with pytest.raises(ShearsError, match="fsdp_version 1 is not supported; allowed: 2"):
        setup_fsdp(SimpleNamespace(state=state))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    cpu = SimpleNamespace(fsdp_plugin=None, distributed_type=DistributedType.MULTI_CPU)
    assert setup_fsdp(SimpleNamespace(state=cpu)) is False
    assert cpu.distributed_type == DistributedType.MULTI_CPU


@needs_launcher
def test_fsdp_equals_single_process(tmp_path):
    out, rec = tmp_path / "fsdp", tmp_path / "rec"
    proc = _launch(out, "--steps", "4", "--dropout", "0", "--record", str(rec), port=29611)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):  # really sharded (accelerate alone would fall back to DDP on CPU)
        assert json.loads((rec / f"meta_rank{rank}.json").read_text()) == {"fsdp": True}
    r0 = json.loads((rec / "configs_rank0.json").read_text())
    assert [s for s, _ in r0] == [0, 1, 2, 3]
    assert r0 == json.loads((rec / "configs_rank1.json").read_text())
    assert len(list(out.rglob("adapter_model.safetensors"))) == 1
    results = json.loads((out / "train_results.json").read_text())
    assert results["world_size"] == 2 and results["effective_batch_size"] == 8

    _assert_equals_single_process(out, tmp_path / "single", steps=4)


def _assert_equals_single_process(out: Path, single: Path, steps: int) -> None:
    """The adapter and losses of the 2-process run in ``out`` are those of one process with the
    same global batch (4 x 2 accumulation = 2 ranks x 2 x 2), trained here into ``single``."""
    tok = make_tokenizer()
    cfg = make_config(
        str(single), max_steps=steps, batch_size=4, adapter=ElasticLoraConfig(alpha=16, dropout=0.0)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_nls(make_model(tok), tok, make_examples(), cfg)
    finally:
        torch.set_num_threads(threads)
    a, b = _adapter(out), _adapter(single)
    _assert_close(a, b, atol=1e-5)
    assert any(torch.count_nonzero(v) for k, v in a.items() if "lora_B" in k)
    assert _losses(out) == pytest.approx(_losses(single), abs=1e-4)


@needs_launcher
def test_fsdp_sigkill_then_resume_equals_uninterrupted(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = _launch(killed, "--steps", "6", "--kill-at", "4", port=29621)
    assert proc.returncode != 0
    ckpt = last_checkpoint(killed)
    assert ckpt is not None and ckpt.name == "checkpoint-4", proc.stderr[-3000:]
    assert not (killed / "adapter_model.safetensors").exists()
    # the checkpoint holds the whole adapter once, not FSDP's copy of the full model
    assert (ckpt / ADAPTER_CKPT).is_file()
    assert not list(ckpt.glob("pytorch_model_fsdp*"))
    shapes = {k: v.shape for k, v in load_file(str(ckpt / ADAPTER_CKPT)).items()}
    assert all(s[0] == 8 or s[1] == 8 for s in shapes.values())  # r_max, not a shard

    proc = _launch(killed, "--steps", "6", "--resume", port=29622)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _launch(straight, "--steps", "6", port=29623)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((killed / "train_results.json").read_text())
    assert res["resumed_from"].endswith("checkpoint-4") and res["global_steps"] == 6
    _assert_close(_adapter(killed), _adapter(straight), atol=1e-6)
    assert _losses(killed) == pytest.approx(_losses(straight), abs=1e-5)
    assert len(list(killed.rglob("adapter_model.safetensors"))) == 1


@needs_launcher
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")
def test_deepspeed_zero2_equals_single_process(tmp_path):
    out, config = tmp_path / "zero2", str(CONFIGS / "deepspeed_zero2.yaml")
    proc = _launch(out, "--steps", "3", "--dropout", "0", port=29631, config=config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(out.rglob("adapter_model.safetensors"))) == 1
    _assert_equals_single_process(out, tmp_path / "single", steps=3)
