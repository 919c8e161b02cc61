"""SparseGPT (Frantar & Alistarh 2023): prune with OBS error compensation, one layer at a time.

For a linear layer ``y = W x`` and calibration inputs ``X`` (in, n), the Hessian of the
reconstruction loss is ``H = 2/n X X^T`` (:class:`HessianStats`). Columns are processed left to
right in blocks of ``blocksize`` (128); when column ``i`` loses weights, the error
``(w - q) / [H^-1]_ii`` is spread onto the not yet processed columns through the upper Cholesky
factor of ``H^-1``. ``percdamp`` (1 %) of the mean diagonal is added to ``H`` first.

Mask selection (score ``w^2 / [H^-1]_ii^2``) uses **per-output-row groups**, as Wanda does: inside
every column block each row drops ``int(i2 * s) - int(i1 * s)`` weights, so every row ends at exactly
``int(in * s)`` zeros. (The original selects over all rows of a block at once.) N:M selects the N
lowest scores in every group of M columns, M dividing ``blocksize``.
"""

from __future__ import annotations

import logging

import torch

from shears.prune.masks import lowest_k_mask, row_prune_count

logger = logging.getLogger(__name__)


class HessianStats:
    """Running float32 ``sum x x^T`` over all tokens; :meth:`hessian` returns ``2/n X X^T``."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu") -> None:
        self.xtx = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.tokens = 0

    def update(self, x: torch.Tensor) -> None:
        """Add a batch of inputs ``x`` (..., in)."""
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (tokens, in)
        self.xtx.addmm_(x.t(), x)  # (in, in)
        self.tokens += x.shape[0]

    def hessian(self) -> torch.Tensor:
        """``2/n X X^T`` (in, in)."""
        return self.xtx * (2.0 / max(self.tokens, 1))


def _upper_cholesky_of_inverse(h: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Dampen ``h`` (in place) and return the upper Cholesky factor of its inverse.

    If ``h`` is still not positive definite, the dampening is multiplied by 10 (up to 4 times).
    """
    diag = torch.arange(h.shape[0], device=h.device)
    damp = percdamp * torch.mean(torch.diag(h)).clamp_min(1e-8)
    for attempt in range(5):
        hd = h.clone()
        hd[diag, diag] += damp
        lower, info = torch.linalg.cholesky_ex(hd)
        if int(info) == 0:
            hinv = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(hinv, upper=True)
            if int(info) == 0:
                return upper
        logger.warning("Hessian not positive definite (attempt %d); raising dampening", attempt + 1)
        damp = damp * 10
    raise RuntimeError("SparseGPT: Hessian stays singular even with strong dampening")


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> torch.Tensor:
    """Return the pruned and error-compensated weight (out, in) in float32; inputs untouched."""
    w = weight.detach().float().clone()  # (out, in)
    h = hessian.detach().float().clone()  # (in, in)
    out_f, in_f = w.shape
    if nm is not None:
        n, m = nm
        if in_f % m:
            raise ValueError(f"N:M pattern {n}:{m} needs in_features divisible by {m}, got {in_f}")
        blocksize = max(m, (blocksize // m) * m)  # a block holds whole N:M groups

    dead = torch.diag(h) == 0  # inputs never active: their weights cannot matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = _upper_cholesky_of_inverse(h, percdamp)  # (in, in), upper triangular

    for i1 in range(0, in_f, blocksize):
        i2 = min(i1 + blocksize, in_f)
        count = i2 - i1
        w1 = w[:, i1:i2].clone()  # (out, count)
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]  # (count, count)
        d = torch.diag(hinv1)  # (count,)

        mask1 = torch.zeros_like(w1, dtype=torch.bool)  # True = prune
        if nm is None:
            k = row_prune_count(i2, sparsity) - row_prune_count(i1, sparsity)
            if k > 0:
                scores = w1.square() / d.square().unsqueeze(0)  # (out, count)
                mask1 = lowest_k_mask(scores, k)

        for i in range(count):
            col = w1[:, i]  # (out,)
            if nm is not None and i % nm[1] == 0:
                scores = w1[:, i : i + nm[1]].square() / d[i : i + nm[1]].square().unsqueeze(0)
                order = torch.sort(scores, dim=1, stable=True).indices[:, : nm[0]]
                mask1[:, i : i + nm[1]].scatter_(1, order, True)
            q = col.masked_fill(mask1[:, i], 0.0)
            q1[:, i] = q
            e = (col - q) / d[i]  # (out,)
            w1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e

        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w
