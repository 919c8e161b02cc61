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


def unstructured_row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """In every row of ``scores`` (out, in), mark the ``int(in * sparsity)`` lowest scores.

    A stable sort breaks ties by column index, so the mask is deterministic.
    """
    out_f, in_f = scores.shape
    k = row_prune_count(in_f, sparsity)
    mask = torch.zeros_like(scores, dtype=torch.bool)  # (out, in)
    if k == 0:
        return mask
    order = torch.sort(scores, dim=1, stable=True).indices  # (out, in), ascending
    mask.scatter_(1, order[:, :k], True)
    return mask


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
