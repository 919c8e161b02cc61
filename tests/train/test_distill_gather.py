"""``--distill`` at the CE tokens only: the teacher's and the student's output heads applied to
the shifted ``labels != -100`` positions give the loss and the gradients of the full-logit path."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import tiny_model  # noqa: E402
from shears.train.teacher import Distiller, Gathered, head_split  # noqa: E402

ARCHS = ["llama", "qwen2", "gemma3", "opt", "gpt_neox", "gpt2"]


def _batch(vocab: int, answer_only: bool, pad: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 12), generator=g)
    attn = torch.ones_like(ids)
    labels = ids.clone()
    if pad:  # right padding of different lengths (the collator's layout)
        for row, n in ((1, 3), (2, 7)):
            attn[row, -n:] = 0
            labels[row, -n:] = -100
            ids[row, -n:] = 0
    if answer_only:  # the prompt carries no loss: a few answer tokens per row
        labels[:, :8] = -100
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def _models(arch: str):
    student = tiny_model(arch, seed=0)
    teacher = tiny_model(arch, seed=1)  # a different model: KD and hidden terms are not 0
    student.train()
    student.requires_grad_(True)
    teacher.requires_grad_(False)
    return student, teacher


def _full(student, teacher, batch, hidden: float, num_items=None):
    """The reference: full logits of both models, CE from the model, terms masked afterwards."""
    d = Distiller(teacher, 0.5, 2.0, hidden, gather=False)
    extra = {} if num_items is None else {"num_items_in_batch": num_items}
    out = student(**batch, output_hidden_states=hidden > 0, **extra)
    t_out = d.teacher_outputs(batch)
    assert not isinstance(t_out, Gathered)
    terms = d.terms(out, t_out, batch["labels"])
    return out.loss, terms, d.combine(out.loss, terms)


def _gathered(student, teacher, batch, hidden: float, num_items=None, student_gather=True):
    d = Distiller(teacher, 0.5, 2.0, hidden)
    t_out = d.teacher_outputs(batch)
    assert isinstance(t_out, Gathered)
    if student_gather:
        ce, out = d.student_loss(student, batch, num_items)
    else:  # the full student with the gathered teacher
        extra = {} if num_items is None else {"num_items_in_batch": num_items}
        out = student(**batch, output_hidden_states=hidden > 0, **extra)
        ce = out.loss
    terms = d.terms(out, t_out, batch["labels"])
    return ce, terms, d.combine(ce, terms)


def _grads(student, fn):
    student.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same dropout masks in both paths
    ce, terms, loss = fn()
    loss.backward()
    grads = {
        n: p.grad.detach().clone() for n, p in student.named_parameters() if p.grad is not None
    }
    return ce.detach(), {k: v.detach() for k, v in terms.items()}, loss.detach(), grads


def _assert_same(a, b):
    ce_a, terms_a, loss_a, grads_a = a
    ce_b, terms_b, loss_b, grads_b = b
    torch.testing.assert_close(ce_a, ce_b, rtol=1e-5, atol=1e-6)
    assert terms_a.keys() == terms_b.keys()
    for k in terms_a:
        torch.testing.assert_close(terms_a[k], terms_b[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for n in grads_a:
        torch.testing.assert_close(grads_a[n], grads_b[n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hidden", [0.0, 1.0])
@pytest.mark.parametrize("answer_only,pad", [(False, False), (True, True), (False, True)])
def test_gathered_loss_and_grads_equal_the_full_path(arch, hidden, answer_only, pad):
    student, teacher = _models(arch)
    assert head_split(student) is not None
    batch = _batch(student.config.vocab_size, answer_only, pad)
    ref = _grads(student, lambda: _full(student, teacher, batch, hidden))
    assert ref[1]["kd"] > 0 and (hidden == 0 or ref[1]["hidden"] > 0)
    _assert_same(ref, _grads(student, lambda: _gathered(student, teacher, batch, hidden)))
    # what the trainer does with a full student output: only the teacher gathered
    mixed = _grads(student, lambda: _gathered(student, teacher, batch, hidden, None, False))
    _assert_same(ref, mixed)


@pytest.mark.parametrize("hidden", [0.0, 1.0])
def test_gathered_ce_follows_num_items_in_batch(hidden):
    """Gradient accumulation: the CE is the sum over label tokens / the accumulated count."""
    student, teacher = _models("llama")
    batch = _batch(student.config.vocab_size, True, True)
    n = torch.tensor(40)
    ref = _grads(student, lambda: _full(student, teacher, batch, hidden, n))
    _assert_same(ref, _grads(student, lambda: _gathered(student, teacher, batch, hidden, n)))


@pytest.mark.parametrize("hidden", [0.0, 1.0])
def test_a_batch_without_ce_tokens(hidden):
    student, teacher = _models("llama")
    batch = _batch(student.config.vocab_size, False, True)
    batch["labels"][:] = -100
    d = Distiller(teacher, 0.5, 2.0, hidden)
    ce, out = d.student_loss(student, batch)
    t_out = d.teacher_outputs(batch)
    assert out.logits.shape[0] == 0 and t_out.logits.shape[0] == 0
    terms = d.terms(out, t_out, batch["labels"])
    assert set(terms) == ({"kd", "hidden"} if hidden else {"kd"})
    assert all(float(v.detach()) == 0.0 for v in terms.values())
    # like Hugging Face's mean over no label tokens, the CE is NaN (the trainer's NaN stop)
    assert torch.isnan(ce) and torch.isnan(student(**batch).loss)
    student.zero_grad(set_to_none=True)
    sum(terms.values()).backward()  # the terms stay in the graph, with zero gradients
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.all(g == 0) for g in grads)
    # and through the full-logit path
    full = Distiller(teacher, 0.5, 2.0, hidden, gather=False)
    s_full = student(**batch, output_hidden_states=hidden > 0)
    full_terms = full.terms(s_full, full.teacher_outputs(batch), batch["labels"])
    assert all(float(v.detach()) == 0.0 for v in full_terms.values())


@pytest.mark.parametrize(
    "field,value",
    [
        ("final_logit_softcapping", 30.0),
        ("logit_scale", 0.0625),
        ("logits_scaling", 4.0),
        ("output_router_logits", True),
    ],
)
def test_logit_quirks_take_the_full_path(field, value):
    student, teacher = _models("llama")
    setattr(student.config, field, value)
    setattr(teacher.config, field, value)
    assert head_split(student) is None
    d = Distiller(teacher, 0.5, 2.0, 0.0)
    batch = _batch(student.config.vocab_size, True, False)
    assert d.student_loss(student, batch) is None
    assert not isinstance(d.teacher_outputs(batch), Gathered)


def test_wrapped_or_switched_off_take_the_full_path():
    student, teacher = _models("llama")
    batch = _batch(student.config.vocab_size, True, False)
    assert head_split(torch.nn.Sequential(student)) is None
    d = Distiller(teacher, 0.5, 2.0, 0.0, gather=False)
    assert d.student_loss(student, batch) is None
    assert not isinstance(d.teacher_outputs(batch), Gathered)
    no_labels = {k: v for k, v in batch.items() if k != "labels"}
    assert not isinstance(Distiller(teacher).teacher_outputs(no_labels), Gathered)


@pytest.mark.parametrize("train_on_inputs", [False, True], ids=["answer_only", "all_tokens"])
def test_training_with_the_gathered_teacher_gives_the_full_path_adapter(
    tmp_path, monkeypatch, train_on_inputs
):
    """Whole runs (gradient accumulation, padding, hidden loss): gathered == full-logit path."""
    import json

    from nls_worker import make_config, make_examples, make_model, make_tokenizer
    from safetensors.torch import load_file

    import shears.train.teacher as teacher_mod
    from shears.adapters import ElasticLoraConfig
    from shears.train import train_nls

    tok = make_tokenizer()
    runs, logs = {}, {}
    for name in ("full", "gathered"):
        if name == "full":
            monkeypatch.setattr(teacher_mod, "head_split", lambda model: None)
        else:
            monkeypatch.undo()
        out = tmp_path / name
        cfg = make_config(
            str(out), distill=True, adapter=ElasticLoraConfig(alpha=16, dropout=0.0),
            max_steps=3, distill_hidden=0.5, train_on_inputs=train_on_inputs,
        )  # fmt: skip
        train_nls(make_model(tok), tok, make_examples(), cfg, teacher=make_model(tok, seed=1))
        runs[name] = load_file(str(out / "adapter_model.safetensors"))
        history = json.loads((out / "trainer_state.json").read_text())["log_history"]
        logs[name] = [
            {k: h[k] for k in ("loss", "ce", "kd", "hidden")} for h in history if "kd" in h
        ]
    assert len(logs["full"]) == 3
    for a, b in zip(logs["full"], logs["gathered"], strict=True):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-4)
    for k in runs["full"]:
        torch.testing.assert_close(runs["gathered"][k], runs["full"][k], rtol=1e-4, atol=1e-6)
