"""Pruning masks from scores, one comparison group per output row (pure tensor functions).

Convention everywhere in ``shears.prune``: a mask is a bool tensor shaped like the weight
``(out_features, in_features)`` and ``True`` marks a weight to **zero**.
"""

from __future__ import annotations

import torch


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """``"unstructured"`` -> ``None``; ``"N:M"`` -> ``(N, M)``. No validation beyond parsing."""
    if pattern == "unstructured":
        return None
    n, m = pattern.split(":")
    return int(n), int(m)


def row_prune_count(in_features: int, sparsity: float) -> int:
    """Weights zeroed in every row: ``int(in_features * sparsity)`` (as the Wanda reference)."""
    return int(in_features * sparsity)


def lowest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Mark the ``k`` lowest entries of every row; ties go to the lowest column index.

    The same mask as taking the first ``k`` of a stable ascending sort, computed with a selection
    (``kthvalue``) instead of a full sort: everything strictly below the row's k-th value, then
    as many entries equal to it as are still needed, leftmost first.
    """
    if k <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    kth = torch.kthvalue(scores, k, dim=1, keepdim=True).values  # (out, 1)
    below = scores < kth  # (out, in)
    need = k - below.sum(dim=1, keepdim=True)  # (out, 1): ties still to take
    tie = scores == kth
    return below | (tie & (tie.cumsum(dim=1) <= need))


def unstructured_row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """In every row of ``scores`` (out, in), mark the ``int(in * sparsity)`` lowest scores
    (ties broken by column index, so the mask is deterministic)."""
    return lowest_k_mask(scores, row_prune_count(scores.shape[1], sparsity))


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M: in every row, inside each block of ``m`` consecutive columns, mark the ``n`` lowest."""
    out_f, in_f = scores.shape
    if in_f % m:
        raise ValueError(f"N:M pattern {n}:{m} needs in_features divisible by {m}, got {in_f}")
    groups = scores.reshape(out_f, in_f // m, m)  # (out, in/m, m)
    order = torch.sort(groups, dim=2, stable=True).indices[..., :n]  # (out, in/m, n)
    mask = torch.zeros_like(groups, dtype=torch.bool)
    mask.scatter_(2, order, True)
    return mask.reshape(out_f, in_f)


def mask_from_scores(
    scores: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None
) -> torch.Tensor:
    """Unstructured per-row mask at ``sparsity``, or the N:M mask when ``nm`` is given."""
    if nm is not None:
        return nm_mask(scores, *nm)
    return unstructured_row_mask(scores, sparsity)
