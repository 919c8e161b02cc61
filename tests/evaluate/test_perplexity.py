import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shears.evaluate.perplexity import perplexity


class Uniform(nn.Module):
    """Zero logits over a vocabulary of ``v``: perplexity is exactly ``v``."""

    def __init__(self, v):
        super().__init__()
        self.v = v
        self.p = nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, input_ids, use_cache=False):
        self.calls.append(tuple(input_ids.shape))
        return type("Out", (), {"logits": torch.zeros(*input_ids.shape, self.v) + self.p})()


def test_uniform_model_has_perplexity_vocab_size():
    m = Uniform(37)
    ids = torch.randint(0, 37, (103,))
    assert perplexity(m, None, ids, seqlen=20, batch_size=3) == pytest.approx(37)
    # 103 tokens in windows of 20: five full windows (batched) and a last one of 3
    assert m.calls == [(3, 20), (2, 20), (1, 3)]


@pytest.mark.parametrize(("seqlen", "stride"), [(16, 16), (16, 5), (64, 64)])
def test_matches_manual_cross_entropy(seqlen, stride):
    from conftest import tiny_model

    model = tiny_model("llama")
    ids = torch.randint(0, 128, (40,))
    got = perplexity(model, None, ids, seqlen=seqlen, stride=stride, batch_size=2)
    # reference: score each token once, with the context the windows give it
    nll, n, prev_end = 0.0, 0, 0
    for begin in range(0, 40, stride):
        end = min(begin + seqlen, 40)
        with torch.no_grad():
            logits = model(ids[begin:end].unsqueeze(0)).logits[0]
        first = max(prev_end - begin, 1)
        if first < end - begin:
            nll += float(
                F.cross_entropy(logits[first - 1 : -1], ids[begin + first : end], reduction="sum")
            )
            n += end - begin - first
        prev_end = end
        if end == 40:
            break
    assert got == pytest.approx(math.exp(nll / n), rel=1e-5)
    if stride == seqlen:
        assert n == 40 - math.ceil(40 / seqlen)  # the first token of each window is unscored


def test_texts_are_tokenised(tiny_tokenizer):
    m = Uniform(len(tiny_tokenizer))
    assert perplexity(m, tiny_tokenizer, ["hello there", "again"], seqlen=8) == pytest.approx(
        len(tiny_tokenizer)
    )
