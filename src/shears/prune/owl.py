"""OWL (Yin et al. 2023, "Outlier Weighed Layerwise sparsity"): per-block sparsities from the
blocks' outlier ratios (pure tensor functions).

The outlier ratio ``D_l`` of decoder block ``l`` is the fraction of Wanda scores
``|W_ij| * ||X_j||`` over all of the block's target linears that exceed ``M`` times their mean.
Blocks with more outliers keep more weights: ``1 - D_l`` is mapped linearly onto
``[S - lambda, S + lambda]``, then shifted (and, if a block would leave ``[0, 1)``, clipped and
re-balanced) so that the mean weighted by each block's target parameters is exactly ``S``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_SPARSITY = 1.0 - 1e-6  # the profile stays in [0, 1)


def outlier_ratio(scores: Sequence[torch.Tensor], m: float) -> float:
    """Fraction of all entries of ``scores`` (any shapes, e.g. one (out, in) per target linear)
    that are larger than ``m`` times the mean over all of them."""
    total = sum(float(s.sum(dtype=torch.float64)) for s in scores)
    count = sum(s.numel() for s in scores)
    if count == 0:
        return 0.0
    threshold = m * total / count
    above = sum(int((s > threshold).sum()) for s in scores)
    return above / count


def _rebalance(s: torch.Tensor, w: torch.Tensor, target: float) -> torch.Tensor:
    """Clip ``s`` (blocks,) to [0, MAX_SPARSITY] and spread the weighted-mean gap to ``target``
    over the blocks not at the bound, until the ``w``-weighted mean is ``target``."""
    total = float(w.sum())
    for _ in range(s.numel() + 1):
        s = s.clamp(0.0, MAX_SPARSITY)
        gap = target * total - float((s * w).sum())
        if abs(gap) <= 1e-12 * total:
            break
        free = s < MAX_SPARSITY if gap > 0 else s > 0.0
        if not bool(free.any()):
            break
        s = torch.where(free, s + gap / float(w[free].sum()), s)
    return s


def owl_profile(
    ratios: Sequence[float], parameters: Sequence[int], sparsity: float, lam: float
) -> list[float]:
    """Per-block sparsities from outlier ratios ``ratios`` (blocks,): ``1 - D_l`` mapped linearly
    onto ``[sparsity - lam, sparsity + lam]``, shifted and clipped so that the mean weighted by
    ``parameters`` (target weights per block) equals ``sparsity``. Equal ratios: uniform."""
    if len(ratios) != len(parameters):
        raise ValueError(f"{len(ratios)} ratios but {len(parameters)} parameter counts")
    if not ratios:
        return []
    keep = 1.0 - torch.tensor(ratios, dtype=torch.float64)  # (blocks,)
    w = torch.tensor(parameters, dtype=torch.float64)  # (blocks,)
    span = float(keep.max() - keep.min())
    if span <= 1e-12 or lam == 0.0:
        s = torch.full_like(keep, sparsity)
    else:
        s = (sparsity - lam) + 2.0 * lam * (keep - keep.min()) / span
        s = s + (sparsity - float((s * w).sum() / w.sum()))
    return [float(v) for v in _rebalance(s, w, sparsity)]
