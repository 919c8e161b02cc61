import pytest
import torch

from shears.prune.magnitude import magnitude_mask
from shears.prune.masks import lowest_k_mask, nm_mask, parse_pattern, unstructured_row_mask


def test_unstructured_row_mask_exact_per_row_and_stable_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    mask = unstructured_row_mask(scores, 0.5)
    # ties broken by column index (stable sort): the first two columns go
    assert mask.tolist() == [[True, True, False, False], [False, False, True, True]]


def test_selection_equals_stable_sort_under_heavy_ties():
    torch.manual_seed(2)
    scores = torch.randint(0, 4, (50, 64)).float()
    for k in (1, 17, 32, 63, 64):
        order = torch.sort(scores, dim=1, stable=True).indices[:, :k]
        ref = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, order, True)
        assert torch.equal(lowest_k_mask(scores, k), ref), k


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.3, 0.5, 0.77, 0.99])
def test_every_row_has_exactly_requested_zeros(sparsity):
    torch.manual_seed(0)
    scores = torch.rand(17, 93)
    mask = unstructured_row_mask(scores, sparsity)
    assert (mask.sum(dim=1) == int(93 * sparsity)).all()
    # the pruned entries are the lowest of their row
    if 0 < int(93 * sparsity) < 93:
        kept_min = scores.masked_fill(mask, float("inf")).min(dim=1).values
        pruned_max = scores.masked_fill(~mask, -float("inf")).max(dim=1).values
        assert (pruned_max <= kept_min).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_nm_mask_blocks_hold_exactly_n(n, m):
    torch.manual_seed(1)
    scores = torch.rand(9, 8 * m)
    mask = nm_mask(scores, n, m)
    assert (mask.reshape(9, -1, m).sum(dim=2) == n).all()
    # inside each block the n lowest go
    groups = scores.reshape(9, -1, m)
    gm = mask.reshape(9, -1, m)
    assert (
        groups.masked_fill(~gm, -1).max(2).values <= groups.masked_fill(gm, 9).min(2).values
    ).all()


def test_nm_mask_rejects_indivisible_width():
    with pytest.raises(ValueError, match="divisible by 4"):
        nm_mask(torch.rand(2, 6), 2, 4)


def test_magnitude_mask_hand_made():
    w = torch.tensor([[3.0, -2.0, 5.0, 1.0], [-1.0, 6.0, -2.0, 0.4]])
    assert magnitude_mask(w, 0.5).tolist() == [
        [False, True, False, True],
        [True, False, False, True],
    ]


def test_parse_pattern():
    assert parse_pattern("unstructured") is None
    assert parse_pattern("2:4") == (2, 4)
