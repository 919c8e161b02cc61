import pytest
import torch
import torch.nn.functional as F
from eval_helpers import tiny_lm

from shears.data.tokenize import encode_example
from shears.evaluate.loss import answer_loss

EXAMPLES = [
    {"instruction": "What is 2 plus 3?", "output": "The answer is 5."},
    {"instruction": "Below is a task", "input": "with input", "output": "42"},
    {"instruction": "Long " * 20, "output": "an answer"},
]


def _manual(model, tok, examples, cutoff):
    total, count = 0.0, 0
    for e in examples:
        f = encode_example(tok, e, "alpaca", cutoff, train_on_inputs=False)
        ids = torch.tensor([f["input_ids"]])
        labels = torch.tensor(f["labels"])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        keep = labels[1:] != -100
        if keep.any():
            total += F.cross_entropy(logits[:-1][keep], labels[1:][keep], reduction="sum").item()
            count += int(keep.sum())
    return total / count


def test_answer_loss_scores_only_answer_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    model = tiny_lm(tok)
    got = answer_loss(model, tok, EXAMPLES, "alpaca", batch_size=2, cutoff_len=256)
    assert got == pytest.approx(_manual(model, tok, EXAMPLES, 256), rel=1e-5)
    # batch size does not matter
    assert answer_loss(model, tok, EXAMPLES, "alpaca", 1, 256) == pytest.approx(got, rel=1e-5)
    # the prompt is context only: a different output changes the loss, and the loss is an
    # average over answer tokens, not over prompt tokens
    other = [dict(e, output="zzzz zzzz") for e in EXAMPLES]
    assert answer_loss(model, tok, other, "alpaca", 2, 256) != pytest.approx(got)


def test_answer_loss_no_answer_tokens_raises(tiny_tokenizer):
    model = tiny_lm(tiny_tokenizer)
    with pytest.raises(ValueError, match="no answer tokens"):
        answer_loss(
            model, tiny_tokenizer, [{"instruction": "x " * 50, "output": "y"}], cutoff_len=8
        )
