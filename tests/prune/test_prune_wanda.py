import torch
from torch import nn

from shears.prune.calibrate import InputStatsHooks, make_stats, prune_layer
from shears.prune.wanda import ColumnNormStats, wanda_mask, wanda_scores

# Hand-made layer: W (out=2, in=4) and two calibration tokens.
W = torch.tensor([[3.0, 2.0, 5.0, 1.0], [-1.0, 6.0, -2.0, 0.4]])
X = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 4.0]])
# ||X_j||_2 = sqrt([1, 1, 1, 16]) = [1, 1, 1, 4]
# scores = |W| * norms = [[3, 2, 5, 4], [1, 6, 2, 1.6]]
# 50 %: row 0 drops columns 1 (2) and 0 (3); row 1 drops columns 0 (1) and 3 (1.6).
EXPECTED = [[True, True, False, False], [True, False, False, True]]


def test_column_norms_accumulate_over_micro_batches():
    stats = ColumnNormStats(4)
    stats.update(X[:1].unsqueeze(0))  # (batch, seq, in)
    stats.update(X[1:].unsqueeze(0))
    assert stats.tokens == 2
    assert torch.allclose(stats.norms(), torch.tensor([1.0, 1.0, 1.0, 4.0]))


def test_wanda_mask_matches_hand_computation():
    stats = ColumnNormStats(4)
    stats.update(X)
    assert torch.allclose(
        wanda_scores(W, stats.norms()), torch.tensor([[3.0, 2.0, 5.0, 4.0], [1.0, 6.0, 2.0, 1.6]])
    )
    assert wanda_mask(W, stats.norms(), 0.5).tolist() == EXPECTED
    # differs from plain magnitude, which would drop column 3 of row 0
    assert wanda_mask(W, torch.ones(4), 0.5).tolist() != EXPECTED


def test_wanda_through_hooks_on_a_real_linear():
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(W)
    hooks = InputStatsHooks({"lin": lin}, lambda m: make_stats("wanda", m))
    lin(X[:1].unsqueeze(0))
    lin(X[1:].unsqueeze(0))
    hooks.remove()
    prune_layer(lin, "wanda", hooks.stats["lin"], 0.5)
    assert (lin.weight == 0).tolist() == EXPECTED
    kept = ~torch.tensor(EXPECTED)
    assert torch.equal(lin.weight[kept], W[kept])  # survivors untouched


def test_wanda_on_gpt2_conv1d_uses_transposed_weight():
    from transformers.pytorch_utils import Conv1D

    conv = Conv1D(2, 4)  # nf=2 outputs, nx=4 inputs; weight is (in, out)
    with torch.no_grad():
        conv.weight.copy_(W.t())
    hooks = InputStatsHooks({"c": conv}, lambda m: make_stats("wanda", m))
    conv(X.unsqueeze(0))
    hooks.remove()
    prune_layer(conv, "wanda", hooks.stats["c"], 0.5)
    assert (conv.weight.t() == 0).tolist() == EXPECTED


def test_shared_input_is_counted_once():
    a, b = nn.Linear(4, 3), nn.Linear(4, 5)
    hooks = InputStatsHooks({"a": a, "b": b}, lambda m: make_stats("wanda", m))
    x = torch.randn(2, 3, 4)
    a(x)
    b(x)  # same tensor: q/k/v style
    y = x * 2
    a(y)
    b(y)
    hooks.remove()
    assert hooks.stats["a"] is hooks.stats["b"]
    assert hooks.stats["a"].tokens == 12
    assert torch.allclose(hooks.stats["a"].sq_sum, 5 * x.reshape(-1, 4).square().sum(0))
