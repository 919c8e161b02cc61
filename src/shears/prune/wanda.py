"""Wanda (Sun et al. 2023): score ``|W[i, j]| * ||X_j||_2``, compared within each output row.

``||X_j||_2`` is the L2 norm of input feature ``j`` over every calibration token; it is kept as a
running float32 sum of squares per input column (:class:`ColumnNormStats`), whatever the model dtype.
"""

from __future__ import annotations

import torch

from shears.prune.masks import mask_from_scores


class ColumnNormStats:
    """Running sum of squares of each input column over all tokens seen (float32)."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.sq_sum = torch.zeros(in_features, dtype=torch.float32, device=device)  # (in,)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        """Add a batch of inputs ``x`` (..., in)."""
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (tokens, in)
        self.sq_sum += x.square().sum(dim=0)
        self.tokens += x.shape[0]

    def norms(self) -> torch.Tensor:
        """``||X_j||_2`` for every input column j, shape (in,)."""
        return self.sq_sum.sqrt()


def wanda_scores(weight: torch.Tensor, col_norms: torch.Tensor) -> torch.Tensor:
    """``|W| * ||X||`` broadcast over rows: (out, in) x (in,) -> (out, in), float32."""
    return weight.detach().float().abs() * col_norms.float().unsqueeze(0)


def wanda_mask(
    weight: torch.Tensor,
    col_norms: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Bool mask (out, in), True = zero: per row the lowest Wanda scores (or per N:M block)."""
    return mask_from_scores(wanda_scores(weight, col_norms), sparsity, nm)
