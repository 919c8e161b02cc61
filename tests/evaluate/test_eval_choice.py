import math

import pytest
import torch
from eval_helpers import RiggedLM, tiny_lm

from shears.data.prompts import format_prompt
from shears.evaluate.choice import (
    choice_metrics,
    choice_predictions,
    choice_scores,
    generation_choice_accuracy,
    loglikelihoods,
)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_rigged_model_prefers_choice_seen_in_question(tiny_tokenizer):
    tok = tiny_tokenizer
    model = RiggedLM(len(tok))
    examples = [
        {"instruction": f"Pick {c}", "choices": ["X", "Y", "Z"], "label": "XYZ".index(c)}
        for c in "XYZ"
    ]
    scores = choice_scores(model, tok, examples, "alpaca", batch_size=2)
    metrics, preds = choice_metrics(scores, examples)
    assert [p["acc"] for p in preds] == [0, 1, 2]
    assert metrics == {"acc": 1.0, "acc_norm": 1.0, "acc_bytes": 1.0}


def test_acc_norm_normalises_by_length(tiny_tokenizer):
    """Unigram model: 'x' costs 2 nats, every 'y' 0.6; 'yyyy' has the lower sum but the higher
    per-character score, so acc picks 'x' and acc_norm picks 'yyyy'."""
    tok = tiny_tokenizer
    (x,) = _ids(tok, "x")
    ys = _ids(tok, "yyyy")
    assert len(ys) == 4 and len(set(ys)) == 1
    # a normalised unigram distribution: log p(x) = -2, log p(y) = -0.6, the rest share what is left
    rest = 1 - math.exp(-2.0) - math.exp(-0.6)
    bias = torch.full((len(tok),), math.log(rest / (len(tok) - 2)))
    bias[x], bias[ys[0]] = -2.0, -0.6
    model = RiggedLM(len(tok), bias, boost=0.0)
    ex = [{"instruction": "q", "choices": ["x", "yyyy"], "label": 1}]
    (scores,) = choice_scores(model, tok, ex, "alpaca")
    assert scores[0] == pytest.approx(-2.0, abs=1e-4)
    assert scores[1] == pytest.approx(-2.4, abs=1e-4)
    assert choice_predictions(scores, ex[0]["choices"]) == {"acc": 0, "acc_norm": 1, "acc_bytes": 1}
    metrics, _ = choice_metrics([scores], ex)
    assert metrics == {"acc": 0.0, "acc_norm": 1.0, "acc_bytes": 1.0}


def test_acc_bytes_differs_from_chars_for_non_ascii():
    # 'é' is 1 character but 2 UTF-8 bytes: -1.5 per char < -1.1, but -0.75 per byte > -1.1
    preds = choice_predictions([-1.5, -2.2], ["é", "ab"])
    assert preds == {"acc": 0, "acc_norm": 1, "acc_bytes": 0}


def test_loglikelihoods_match_full_forward(tiny_tokenizer):
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    ctx = format_prompt("The answer is", "", "alpaca")
    reqs = [(ctx, " 42."), (ctx, " a task"), ("Below is", " an instruction")]
    got = loglikelihoods(model, tok, reqs, "alpaca", batch_size=2)
    for (c, cont), (ll, _) in zip(reqs, got, strict=True):
        c_ids, k_ids = _ids(tok, c), _ids(tok, cont)
        ids = torch.tensor([c_ids + k_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        want = sum(logp[len(c_ids) - 1 + j, t].item() for j, t in enumerate(k_ids))
        assert ll == pytest.approx(want, abs=1e-4)
    # batching does not change scores
    single = loglikelihoods(model, tok, reqs, "alpaca", batch_size=1)
    assert [s for s, _ in single] == pytest.approx([s for s, _ in got], abs=1e-5)


def test_generation_choice_accuracy_counts_answer_words(tiny_tokenizer, monkeypatch):
    import shears.evaluate.choice as choice

    monkeypatch.setattr(
        choice,
        "generate_answers",
        lambda *a, **k: ["the answer is answer2", "answer1 maybe", "I am not sure"],
    )
    ex = [
        {"instruction": "q1", "answer": "answer2", "answer_words": ["answer1", "answer2"]},
        {"instruction": "q2", "answer": "answer2", "answer_words": ["answer1", "answer2"]},
        {"instruction": "q3", "answer": "answer1", "answer_words": ["answer1", "answer2"]},
    ]
    acc, recs = generation_choice_accuracy(None, tiny_tokenizer, ex)
    assert acc == pytest.approx(1 / 3)
    assert [r["extracted"] for r in recs] == ["answer2", "answer1", None]


def test_answer_prefix_moves_the_scored_choice_behind_it(tiny_tokenizer):
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    plain = {"instruction": "Who?", "choices": ["wife", "son"], "label": 0}
    prefixed = {**plain, "answer_prefix": "The answer is"}
    ctx = format_prompt("Who?", "", "alpaca", tok)
    want = [
        s
        for s, _ in loglikelihoods(
            model, tok, [(ctx + "The answer is", " wife"), (ctx + "The answer is", " son")]
        )
    ]
    got = choice_scores(model, tok, [prefixed], "alpaca")[0]
    assert got == pytest.approx(want, abs=1e-5)
    assert choice_scores(model, tok, [plain], "alpaca")[0] != pytest.approx(got, abs=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "opt", "gpt_neox", "gpt2"])
def test_shared_context_scores_equal_whole_sequence_scores(tiny_tokenizer, arch):
    """Running each context once and scoring its choices from the KV cache gives the sums of
    scoring context + choice whole, for one- and many-token choices and ragged contexts."""
    tok = tiny_tokenizer
    model = tiny_lm(tok, arch)
    contexts = ["Question: which?", "A much longer question, padded less: which one is it?", "Q"]
    choices = ["a", "bcd efg", " x", "longer choice here"]
    requests = [(c, ch) for c in contexts for ch in choices] + [("solo context", "z")]
    whole = loglikelihoods(model, tok, requests, batch_size=3, share_context=False)
    shared = loglikelihoods(model, tok, requests, batch_size=2, share_context=True)
    for (s1, g1), (s2, g2) in zip(whole, shared, strict=True):
        assert s2 == pytest.approx(s1, abs=1e-4)
        assert g1 == g2
    assert len({round(s, 3) for s, _ in whole}) > len(requests) // 2  # not all the same


def test_shared_context_runs_each_context_once(tiny_tokenizer):
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    calls: list[tuple[int, int]] = []
    model.register_forward_pre_hook(
        lambda m, a, kw: calls.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    examples = [
        {"instruction": f"Question {i}", "choices": ["a", "b", "c", "d"], "label": 0}
        for i in range(5)
    ]
    choice_scores(model, tok, examples, "alpaca", batch_size=8)
    # one-token choices: one forward over the 5 contexts, no second pass
    assert len(calls) == 1 and calls[0][0] == 5
