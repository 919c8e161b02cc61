import pytest
import torch

from shears.prune.magnitude import magnitude_mask
from shears.prune.sparsegpt import HessianStats, sparsegpt_prune
from shears.prune.wanda import ColumnNormStats, wanda_mask


def _layer_and_inputs(seed=0, out_f=48, in_f=96, tokens=1024):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out_f, in_f, generator=g)
    # correlated, unevenly scaled inputs (as real activations are)
    mix = torch.randn(in_f, in_f, generator=g) / in_f**0.5 + torch.eye(in_f)
    scale = torch.rand(in_f, generator=g) * 3 + 0.1
    x = (torch.randn(tokens, in_f, generator=g) @ mix) * scale  # (tokens, in)
    return w, x


def _recon_error(w, w_pruned, x):
    return float(((x @ w.t() - x @ w_pruned.t()) ** 2).sum())


def test_hessian_is_two_over_n_xxt():
    x = torch.randn(3, 5, 6)
    stats = HessianStats(6)
    stats.update(x[:1])
    stats.update(x[1:])
    flat = x.reshape(-1, 6)
    assert torch.allclose(stats.hessian(), 2 / 15 * flat.t() @ flat, atol=1e-5)


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_sparsegpt_beats_magnitude_on_reconstruction(pattern):
    w, x = _layer_and_inputs()
    stats = HessianStats(w.shape[1])
    stats.update(x)
    pruned = sparsegpt_prune(w, stats.hessian(), 0.5, pattern, blocksize=32)
    mag = w.masked_fill(magnitude_mask(w, 0.5, pattern), 0.0)
    col = ColumnNormStats(w.shape[1])
    col.update(x)
    wan = w.masked_fill(wanda_mask(w, col.norms(), 0.5, pattern), 0.0)
    e_sgpt, e_mag, e_wanda = (_recon_error(w, p, x) for p in (pruned, mag, wan))
    assert e_sgpt < e_mag
    assert e_sgpt < e_wanda
    # exact sparsity per row / per N:M block
    zeros = pruned == 0
    if pattern is None:
        assert (zeros.sum(1) == 48).all()
    else:
        assert (zeros.reshape(48, -1, 4).sum(2) == 2).all()


def test_sparsegpt_rows_exact_with_partial_last_block():
    w, x = _layer_and_inputs(seed=3, out_f=10, in_f=70, tokens=300)
    stats = HessianStats(70)
    stats.update(x)
    pruned = sparsegpt_prune(w, stats.hessian(), 0.3, blocksize=32)  # blocks 32, 32, 6
    assert ((pruned == 0).sum(1) == int(70 * 0.3)).all()
    assert torch.equal(
        w, _layer_and_inputs(seed=3, out_f=10, in_f=70, tokens=300)[0]
    )  # input untouched


def test_sparsegpt_dead_inputs_and_zero_sparsity():
    w, x = _layer_and_inputs(seed=1, out_f=8, in_f=16, tokens=64)
    x[:, 3] = 0  # an input that never fires
    stats = HessianStats(16)
    stats.update(x)
    pruned = sparsegpt_prune(w, stats.hessian(), 0.0)
    assert (pruned[:, 3] == 0).all()
    keep = torch.ones(16, dtype=torch.bool)
    keep[3] = False
    # no pruning: nothing else changes beyond float noise
    assert torch.allclose(pruned[:, keep], w[:, keep], atol=1e-4)
