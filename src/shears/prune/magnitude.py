"""Magnitude pruning: score ``|W[i, j]|``, per-output-row groups (no calibration data needed)."""

from __future__ import annotations

import torch

from shears.prune.masks import mask_from_scores


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """``|W|`` in float32; ``weight`` is (out, in)."""
    return weight.detach().float().abs()


def magnitude_mask(
    weight: torch.Tensor, sparsity: float, nm: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bool mask (out, in), True = zero: the lowest ``|W|`` of every row (or of every N:M block)."""
    return mask_from_scores(magnitude_scores(weight), sparsity, nm)
