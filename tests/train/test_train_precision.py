"""Training precision on CPU: ``auto`` follows the shared policy (:mod:`shears.precision`), bf16
is autocast with fp32 master weights for the student and the teacher, fp32 changes nothing."""

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import make_config, make_examples, make_model, make_tokenizer  # noqa: E402

import shears.precision  # noqa: E402
from shears.adapters import ElasticLoraConfig, elastic_layers  # noqa: E402
from shears.train import train_nls  # noqa: E402
from shears.train.nls import _device_flags  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def _policy(monkeypatch, train_bf16: bool) -> None:
    """The shared policy as on a CPU with bf16 instructions, ``auto`` bf16 for train or not."""
    monkeypatch.setattr(shears.precision, "cpu_bf16", lambda: True)
    monkeypatch.setitem(shears.precision.AUTO_BF16_CPU, "train", train_bf16)


class Seen(TrainerCallback):
    """The Trainer's ``bf16`` flag, and after each step the dtypes of the adapter parameters."""

    def __init__(self) -> None:
        self.bf16: bool | None = None
        self.dtypes: set[torch.dtype] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.bf16 = args.bf16

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.dtypes |= {p.dtype for p in model.parameters() if p.requires_grad}


def _autocast_probe(module: torch.nn.Module, seen: list) -> None:
    """Record ``torch.get_autocast_dtype`` (or None when off) at every forward of ``module``."""

    def hook(mod, args):
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)

    module.register_forward_pre_hook(hook)


@pytest.mark.parametrize(
    "precision, policy, bf16",
    [("auto", True, True), ("bf16", False, True), ("auto", False, False), ("fp32", True, False)],
)
def test_cpu_flags_follow_the_policy(monkeypatch, precision, policy, bf16):
    _policy(monkeypatch, policy)
    flags = _device_flags(make_config("x", precision=precision))
    assert flags == {"use_cpu": True, "bf16": bf16, "fp16": False}


@pytest.mark.parametrize("policy", [True, False], ids=["bf16", "fp32"])
def test_auto_training_precision_on_cpu(tok, tmp_path, monkeypatch, policy):
    _policy(monkeypatch, policy)
    model, seen, forwards = make_model(tok), Seen(), []
    cfg = make_config(str(tmp_path / "out"), max_steps=2, precision="auto")
    adapter_layers = []

    class Probe(TrainerCallback):  # once the adapter is injected
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            layer = next(iter(elastic_layers(model).values()))
            adapter_layers.append(layer)
            _autocast_probe(layer, forwards)

    res = train_nls(model, tok, make_examples(8), cfg, callbacks=[seen, Probe()])
    assert seen.bf16 is policy
    assert seen.dtypes == {torch.float32}  # fp32 master weights after every step
    assert forwards and set(forwards) == {torch.bfloat16 if policy else None}
    assert res.precision == ("bf16" if policy else "fp32")
    saved = json.loads((tmp_path / "out" / "train_results.json").read_text())
    assert saved["precision"] == res.precision
    assert all(p.dtype == torch.float32 for p in adapter_layers[0].parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_teacher_runs_under_the_student_autocast(tok, tmp_path, precision):
    student, teacher = make_model(tok), make_model(tok)
    student_seen, teacher_seen = [], []
    _autocast_probe(teacher.model, teacher_seen)  # the body, as for the student
    _autocast_probe(student.model, student_seen)  # the body: the CE-token path calls it directly
    cfg = make_config(
        str(tmp_path / "out"),
        max_steps=2,
        distill=True,
        precision=precision,
        adapter=ElasticLoraConfig(alpha=16, dropout=0.0),
    )
    train_nls(student, tok, make_examples(8), cfg, teacher=teacher)
    want = torch.bfloat16 if precision == "bf16" else None
    assert teacher_seen and set(teacher_seen) == {want}
    assert student_seen and set(student_seen) == {want}
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
