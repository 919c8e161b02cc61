import pytest
import torch
from eval_helpers import tiny_lm

from shears.evaluate.generate import build_prompts, generate, generate_answers
from shears.evaluate.math import math_accuracy

QUESTIONS = [
    {"instruction": "What is 2 plus 3?"},
    {"instruction": "The answer is 42. Below is an instruction that describes a task." * 2},
    {"instruction": "Hi"},
    {"instruction": "Tom has 12 apples", "input": "and eats 5. How many are left?"},
    {"instruction": "is an instruction"},
]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "qwen2"])
def test_batched_generation_equals_batch_size_one(tiny_tokenizer, arch):
    model = tiny_lm(tiny_tokenizer, arch).double()  # float64: no rounding ties between shapes
    batched = generate_answers(model, tiny_tokenizer, QUESTIONS, "alpaca", 4, max_new_tokens=10)
    single = generate_answers(model, tiny_tokenizer, QUESTIONS, "alpaca", 1, max_new_tokens=10)
    assert batched == single
    assert any(batched)  # the tiny model does produce text


def test_generation_matches_manual_greedy_decoding(tiny_tokenizer):
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    prompts = build_prompts(QUESTIONS[:3], "alpaca", tok)
    res = generate(model, tok, prompts, "alpaca", batch_size=3, max_new_tokens=6)
    for prompt, text in zip(prompts, res.texts, strict=True):
        ids = tok(prompt)["input_ids"]
        out = []
        for _ in range(6):
            with torch.no_grad():
                nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(nxt)
            if nxt == tok.eos_token_id:
                break
        assert text == tok.decode(out, skip_special_tokens=True)
    assert 0 < res.new_tokens <= 18


def test_math_accuracy_scores_rigged_outputs(tiny_tokenizer, monkeypatch):
    import shears.evaluate.math as m

    monkeypatch.setattr(m, "generate_answers", lambda *a, **k: ["5", "so 1,000 left", "x"])
    ex = [
        {"instruction": "a", "answer": "5"},
        {"instruction": "b", "answer": "1000"},
        {"instruction": "c", "answer": "3"},
    ]
    acc, recs = math_accuracy(None, tiny_tokenizer, ex)
    assert acc == pytest.approx(2 / 3)
    assert [r["extracted"] for r in recs] == [5.0, 1000.0, None]
    monkeypatch.setattr(m, "generate_answers", lambda *a, **k: ["(B)", "A or C", "none"])
    acc, recs = math_accuracy(
        None, tiny_tokenizer, [{"answer": "B"}, {"answer": "C"}, {"answer": "E"}], kind="letter"
    )
    assert acc == pytest.approx(1 / 3)
