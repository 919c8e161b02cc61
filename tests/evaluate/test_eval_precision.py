"""``--precision`` of ``shears eval`` and ``shears search``: bf16 autocast inside the model's
forward passes (generation, multiple-choice scoring, perplexity) when asked, none with fp32,
``auto`` following the ``eval`` policy of :mod:`shears.precision`; the label in the results; one
error line for a bad value; the stage digest unchanged at the default."""

import hashlib
import json

import pytest
import torch
from eval_helpers import tiny_lm, write_json

import shears.precision
from input_helpers import one_error
from shears.config import original_names, to_dict
from shears.errors import ShearsError
from shears.evaluate.config import EvalConfig
from shears.evaluate.suite import evaluate_model
from shears.pipeline.ledger import NEUTRAL_KEYS, stage_digest
from shears.search.config import SearchConfig


def _tasks(tmp_path):
    math = [{"instruction": "What is 2 plus 3?", "answer": "5"}]
    mc = [{"question": "Pick red", "choices": ["red", "blue"], "label": 0}]
    (tmp_path / "held.txt").write_text("some held out text " * 8)
    return [
        f"math:{write_json(tmp_path / 'math.json', math)}",
        f"mc:{write_json(tmp_path / 'mc.json', mc)}",
        f"ppl:{tmp_path / 'held.txt'}",
    ]


def _autocast_seen(tmp_path, tokenizer, precision: str) -> tuple[dict, set[bool]]:
    """Evaluate with a forward hook recording ``torch.is_autocast_enabled`` inside the model."""
    model = tiny_lm(tokenizer)
    seen: list[tuple[type, bool]] = []
    model.register_forward_hook(
        lambda mod, args, out: seen.append(torch.is_autocast_enabled("cpu"))
    )
    cfg = EvalConfig(
        tasks=_tasks(tmp_path),
        max_new_tokens=2,
        ppl_seqlen=16,
        progress=False,
        precision=precision,
    )
    res = evaluate_model(model, tokenizer, cfg=cfg)
    assert len(seen) >= 3  # generation, choice scoring and perplexity all ran the model
    return res, set(seen)


def test_bf16_autocast_inside_every_forward(tmp_path, tiny_tokenizer):
    res, seen = _autocast_seen(tmp_path, tiny_tokenizer, "bf16")
    assert seen == {True}
    assert res["precision"] == "bf16" and res["autocast"] == "bf16-autocast"
    assert res["tasks"]["held_ppl"]["perplexity"] > 1
    assert not torch.is_autocast_enabled("cpu")  # and off again afterwards


def test_fp32_no_autocast(tmp_path, tiny_tokenizer):
    res, seen = _autocast_seen(tmp_path, tiny_tokenizer, "fp32")
    assert seen == {False}
    assert res["precision"] == "fp32" and res["autocast"] == "off"


@pytest.mark.parametrize("policy", [True, False])
def test_auto_follows_the_eval_policy(tmp_path, tiny_tokenizer, monkeypatch, policy):
    monkeypatch.setitem(shears.precision.AUTO_BF16_CPU, "eval", policy)
    monkeypatch.setattr(shears.precision, "cpu_bf16", lambda *a: True)
    res, seen = _autocast_seen(tmp_path, tiny_tokenizer, "auto")
    assert seen == {policy}
    assert res["autocast"] == ("bf16-autocast" if policy else "off")


def test_bf16_weights_need_no_autocast(tmp_path, tiny_tokenizer):
    from shears.evaluate.suite import eval_autocast

    model = tiny_lm(tiny_tokenizer)
    assert eval_autocast(model, "bf16") == torch.bfloat16
    assert eval_autocast(model.to(torch.bfloat16), "bf16") is None


def test_bad_precision_is_one_line(tmp_path, capsys, tiny_folder):
    with pytest.raises(ShearsError, match=r"--precision 'fp16' is not known; allowed: auto"):
        EvalConfig(precision="fp16")
    with pytest.raises(ShearsError, match=r"--precision 'half' is not known; allowed: auto"):
        SearchConfig(adapter="a", precision="half")
    argv = ["eval", "--model", tiny_folder, "--output-dir", tmp_path / "o", "--precision", "fp16"]
    one_error(capsys, *argv, match="--precision 'fp16' is not known; allowed: auto, fp32, bf16")


@pytest.mark.parametrize("cfg", [EvalConfig(), SearchConfig(adapter="a")], ids=["eval", "search"])
def test_default_precision_keeps_the_stage_digest(cfg):
    # the settings as a run recorded before --precision saw them (under their first names)
    first = original_names(type(cfg))
    settings = {
        first.get(k, k): v
        for k, v in to_dict(cfg).items()
        if k not in NEUTRAL_KEYS and k != "precision"
    }
    if isinstance(cfg, SearchConfig):
        settings = {k: v for k, v in settings.items() if k != "max_params"}  # added before
    text = json.dumps({"settings": settings, "upstream": ["x"]}, sort_keys=True, default=str)
    assert stage_digest(cfg, ["x"]) == hashlib.sha1(text.encode()).hexdigest()[:16]
    cfg.precision = "bf16"
    assert stage_digest(cfg, ["x"]) != hashlib.sha1(text.encode()).hexdigest()[:16]
