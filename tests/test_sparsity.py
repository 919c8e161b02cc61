"""shears.sparsity: one counter for prune, eval and export (tied weights once, elastic adapters
whole, at their active rank or not at all)."""

import pytest
import torch
from torch import nn

from conftest import tiny_model
from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.sparsity import (
    count_nonzero_parameters,
    count_parameters,
    linear_sparsity,
    total_stats,
    weight_stats,
    zero_fraction,
    zeros,
)


def tiny_lm(tokenizer) -> nn.Module:
    """A tiny random LLaMA whose vocabulary fits ``tokenizer`` (as tests/evaluate's)."""
    return tiny_model("llama", tokenizer=tokenizer, max_positions=1024)


class HandMade(nn.Module):
    """embedding 4x3 (2 zeros), a tied head, a 3->2 linear (3 zeros) with an elastic LoRA
    (r_max 4, active 2), bias 2 (1 zero)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(4, 3)
        self.head = nn.Linear(3, 4, bias=False)
        self.head.weight = self.embed.weight  # tied: counts once
        lin = nn.Linear(3, 2)
        self.proj = ElasticLoRALinear(lin, r_max=4, alpha=8)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1.0, 0, 2], [3, 4, 5], [0, 6, 7], [8, 9, 1]]))
            lin.weight.copy_(torch.tensor([[0.0, 1, 0], [2, 0, 3]]))
            lin.bias.copy_(torch.tensor([0.0, 1]))
            self.proj.lora_A.copy_(torch.tensor([[1.0, 0, 1], [1, 1, 1], [5, 5, 5], [5, 5, 5]]))
            self.proj.lora_B.copy_(torch.tensor([[1.0, 0, 9, 9], [0, 0, 9, 9]]))
        self.proj.active_rank = 2


# ---------------------------------------------------------------------------- tensors


def test_weight_stats_total_and_fraction():
    w = torch.tensor([[0.0, 1.0], [-0.0, 2.0], [3.0, 0.0]])
    assert zeros(w) == 3
    assert weight_stats(w) == {"zeros": 3, "numel": 6, "sparsity": 0.5}
    layers = {"a": weight_stats(w), "b": weight_stats(torch.ones(2))}
    assert total_stats(layers) == {"zeros": 3, "numel": 8, "sparsity": 3 / 8}
    assert total_stats({}) == {"zeros": 0, "numel": 0, "sparsity": 0.0}
    assert zero_fraction([w, torch.ones(2)]) == 3 / 8
    assert zero_fraction([]) is None


# ---------------------------------------------------------------------------- models (moved from
# tests/test_models.py and tests/evaluate/test_eval_sparsity.py)


def test_count_parameters_hand_made():
    lin = torch.nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 0.0, 0.0]]))
    model = torch.nn.Sequential(lin, lin)  # shared module counted once
    assert count_parameters(model) == {"parameters": 8, "nonzero_parameters": 3}


def test_count_parameters_adapter_modes():
    m = HandMade()  # base 20 / 14 non-zero; A 12 (11 nz) + B 8 (5 nz); at r=2: 10 (6 nz)
    assert count_parameters(m) == {"parameters": 40, "nonzero_parameters": 30}
    assert count_parameters(m, "active") == {"parameters": 30, "nonzero_parameters": 20}
    assert count_parameters(m, "none") == {"parameters": 20, "nonzero_parameters": 14}


def test_count_nonzero_hand_made_active_rank():
    m = HandMade()
    c = count_nonzero_parameters(m)
    # base: embed 12 (10 nz) + linear 6 (3 nz) + bias 2 (1 nz) = 20 / 14
    # adapter at r=2: A[:2] 6 (5 nz) + B[:, :2] 4 (1 nz) = 10 / 6
    assert c["parameters"] == 30
    assert c["nonzero_parameters"] == 20
    assert c["adapter_parameters"] == 10
    assert c["adapter_nonzero_parameters"] == 6
    assert c["sparsity"] == pytest.approx(1 - 20 / 30)
    m.proj.active_rank = 4  # the full super-adapter: A 12 (11 nz) + B 8 (5 nz)
    c4 = count_nonzero_parameters(m)
    assert (c4["parameters"], c4["nonzero_parameters"]) == (40, 30)


def test_linear_sparsity_counts_block_linears_only(tiny_tokenizer):
    model = tiny_lm(tiny_tokenizer)
    lin = model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        lin.weight[:, : lin.weight.shape[1] // 2] = 0
    total = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and ".layers." in n
    )
    assert linear_sparsity(model) == pytest.approx(lin.weight.numel() / 2 / total)
    assert linear_sparsity(HandMade()) is None  # no decoder blocks


def test_peft_adapter_counts_at_its_rank(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    model = tiny_lm(tiny_tokenizer)
    base = count_nonzero_parameters(model)["parameters"]
    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, target_modules=["q_proj"], rank_pattern={"layers.1.self_attn.q_proj": 2}),
    )
    c = count_nonzero_parameters(peft_model)
    # q_proj is 32 -> 32: r * (32 + 32) per layer
    assert c["adapter_parameters"] == 4 * 64 + 2 * 64
    assert c["parameters"] == base + 6 * 64
