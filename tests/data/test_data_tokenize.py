"""Prompts and tokenisation with loss labels: train_on_inputs, cutoff, EOS, padding."""

import pytest

from shears.data.prompts import format_prompt
from shears.data.tokenize import IGNORE_INDEX, encode_example, pad_batch
from shears.errors import ShearsError

EX = {"instruction": "Add 1 and 2", "input": "", "output": "The answer is 3."}


def test_alpaca_prompt_formats():
    assert format_prompt("Do it").endswith("### Instruction:\nDo it\n\n### Response:\n")
    with_input = format_prompt("Do it", "on this")
    assert "### Input:\non this" in with_input
    with pytest.raises(ShearsError, match="prompt style 'fancy'"):
        format_prompt("x", style="fancy")


def test_chat_style_needs_a_template(tiny_tokenizer):
    with pytest.raises(ShearsError, match="chat template"):
        format_prompt("x", style="chat", tokenizer=tiny_tokenizer)


def test_encode_labels_and_eos(tiny_tokenizer):
    full = encode_example(tiny_tokenizer, EX, cutoff_len=512)
    assert full["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert full["labels"] == full["input_ids"] and full["attention_mask"] == [1] * len(
        full["input_ids"]
    )
    prompt_only = tiny_tokenizer(format_prompt(EX["instruction"]))["input_ids"]
    assert full["prompt_len"] == len(prompt_only)
    masked = encode_example(tiny_tokenizer, EX, cutoff_len=512, train_on_inputs=False)
    n = masked["prompt_len"]
    assert masked["labels"][:n] == [IGNORE_INDEX] * n
    assert masked["labels"][n:] == masked["input_ids"][n:] and len(masked["labels"]) > n


def test_cutoff_truncates_without_eos(tiny_tokenizer):
    enc = encode_example(tiny_tokenizer, EX, cutoff_len=10)
    assert len(enc["input_ids"]) == 10 and enc["prompt_len"] == 10
    assert enc["input_ids"][-1] != tiny_tokenizer.eos_token_id


def test_pad_batch_right_and_left():
    feats = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [5, 6, 7]},
             {"input_ids": [8], "attention_mask": [1], "labels": [-100]}]  # fmt: skip
    right = pad_batch(feats, pad_id=0)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["labels"].tolist() == [[5, 6, 7], [-100, -100, -100]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    left = pad_batch(feats, pad_id=0, side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
