"""Tiny models and data for the evaluation tests (imported by name: tests/ is on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from conftest import tiny_model


def tiny_lm(tokenizer, arch: str = "llama", seed: int = 0) -> nn.Module:
    """A tiny random causal LM whose vocabulary fits ``tokenizer`` (1024 positions)."""
    return tiny_model(arch, seed, tokenizer=tokenizer, max_positions=1024)


class RiggedLM(nn.Module):
    """Hand-built LM: logits = ``bias`` + ``boost`` for every token already seen in the sequence.

    So a choice whose tokens occur in the question is preferred (conditioning works), and among
    unseen tokens the bias decides (unigram preferences).
    """

    def __init__(self, vocab: int, bias: torch.Tensor | None = None, boost: float = 8.0):
        super().__init__()
        self.vocab = vocab
        self.bias = nn.Parameter(bias if bias is not None else torch.zeros(vocab))
        self.boost = boost
        self.config = SimpleNamespace(max_position_embeddings=512)

    def forward(self, input_ids, attention_mask=None, **kw):
        onehot = torch.nn.functional.one_hot(input_ids, self.vocab).float()  # (b, s, V)
        seen = (onehot.cumsum(1) > 0).float()
        logits = self.bias + self.boost * seen  # (b, s, V)
        return SimpleNamespace(logits=logits)


def write_json(path: Path, rows) -> str:
    path.write_text(json.dumps(rows))
    return str(path)


def save_tiny_model(model: nn.Module, tokenizer, folder: Path) -> str:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


MATH_ROWS = [
    {"instruction": "What is 2 plus 3?", "input": "", "output": "5", "answer": "5"},
    {"instruction": "Tom has 1,200 apples and eats 200.", "answer": "1000"},
    {"instruction": "Compute 7 minus 9.", "answer": "-2"},
]

MC_ROWS = [
    {"question": "Pick the color: red", "choices": ["blue", "red", "green"], "label": 1},
    {"question": "Is the sky up?", "choices": ["yes", "no"], "label": 0},
    {"instruction": "Which is a number?", "choices": ["cat", "42"], "answer": "42"},
]
