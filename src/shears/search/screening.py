"""First-order screening of neighbours: the change in loss from removing or adding rank slices.

Give every rank slice ``i`` of an elastic layer a gate ``m_i`` (1 if active, 0 if not):
``y = W x + s * B diag(m) A x``. Then ``dL/dm_i = s * sum_t (g_t . B[:, i]) (A[i] . x_t)`` with
``g_t = dL/dy_t``, valid for active and inactive slices alike (sparse adapters: the masked delta,
``s * B[:, i]^T ((G * mask) A[i]^T)`` with ``G = sum_t g_t x_t^T``). Moving a group from rank ``r``
to ``r'`` changes the loss by about ``-sum_{r' <= i < r} dL/dm_i`` (down) or
``+sum_{r <= i < r'} dL/dm_i`` (up), summed over the group's modules. One forward and one backward
at the current config estimate every neighbour.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.search_space import Config, SearchSpace
from shears.evaluate.parallel import SINGLE, DataParallel, merge_indexed


def rank_gradients(
    layers: dict[str, ElasticLoRALinear],
    batches: list[dict[str, torch.Tensor]],
    batch_nll: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    n_tokens: int,
    parallel: DataParallel = SINGLE,
) -> tuple[float, dict[str, torch.Tensor]]:
    """``(mean loss, {module: dL/dm (r_max,)})`` at the current active ranks, over all batches.

    ``parallel``: the processes that share the batches round-robin; each runs its own, the
    per-batch pieces are gathered and added in batch order (:func:`sum_rank_gradients`), so every
    process gets what one process computes, bit for bit."""
    saved_flags = {
        n: (lay.lora_A.requires_grad, lay.lora_B.requires_grad) for n, lay in layers.items()
    }
    done: list[tuple[int, tuple[float, dict[str, torch.Tensor]]]] = []
    try:
        for lay in layers.values():  # a graph through every adapter, whatever the caller froze
            lay.lora_A.requires_grad_(True)
            lay.lora_B.requires_grad_(True)
        for bi, batch in enumerate(batches):
            if parallel.mine(bi):
                done.append((bi, batch_rank_gradients(layers, batch, batch_nll, n_tokens)))
    finally:
        for n, lay in layers.items():
            lay.lora_A.requires_grad_(saved_flags[n][0])
            lay.lora_B.requires_grad_(saved_flags[n][1])
    parts = merge_indexed(parallel.gather(done), len(batches))
    r_max = {n: lay.r_max for n, lay in layers.items()}
    total, grads = sum_rank_gradients(r_max, parts)
    return total / n_tokens, grads


def batch_rank_gradients(
    layers: dict[str, ElasticLoRALinear],
    batch: dict[str, torch.Tensor],
    batch_nll: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    n_tokens: int,
) -> tuple[float, dict[str, torch.Tensor]]:
    """``(summed NLL, {module: its share of dL/dm (r_max,), on the CPU})`` of one batch (the
    adapters must require grad); modules the loss does not reach are left out."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name, lay in layers.items():

        def hook(_mod, args, out, name=name):
            seen[name] = (args[0].detach(), out)

        handles.append(lay.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            nll = batch_nll(batch)
    finally:
        for h in handles:
            h.remove()
    names = [n for n in seen if seen[n][1].requires_grad]
    outs = torch.autograd.grad(nll / n_tokens, [seen[n][1] for n in names], allow_unused=True)
    with torch.no_grad():
        grads = {
            name: _gate_grad(layers[name], seen[name][0], g).cpu()
            for name, g in zip(names, outs, strict=True)
            if g is not None
        }
    return float(nll.detach()), grads


def sum_rank_gradients(
    r_max: dict[str, int], parts: list[tuple[float, dict[str, torch.Tensor]]]
) -> tuple[float, dict[str, torch.Tensor]]:
    """``(summed NLL, {module: dL/dm (r_max,)})`` of per-batch pieces, added in their order from
    zero (float32 gradients, a Python float NLL), as one process accumulates them."""
    grads = {n: torch.zeros(r, dtype=torch.float32) for n, r in r_max.items()}
    total = 0.0
    for nll, part in parts:
        total += nll
        for name, g in part.items():
            grads[name] += g
    return total, grads


def _gate_grad(layer: ElasticLoRALinear, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """dL/dm for every rank slice of ``layer``; x (..., in), g (..., out) -> (r_max,)."""
    a = layer.lora_A.detach().float()  # (r_max, in)
    b = layer.lora_B.detach().float()  # (out, r_max)
    x = x.reshape(-1, x.shape[-1]).float()  # (n, in)
    g = g.reshape(-1, g.shape[-1]).float()  # (n, out)
    if layer.sparse_adapter:
        big_g = (g.t() @ x) * layer.weight_mask().float()  # (out, in)
        return layer.scaling * ((big_g @ a.t()) * b).sum(0)  # (r_max,)
    return layer.scaling * ((x @ a.t()) * (g @ b)).sum(0)  # (n, r) * (n, r) -> (r_max,)


def estimate_candidates(
    space: SearchSpace,
    grads: dict[str, torch.Tensor],
    config: Config,
    candidates: list[Config],
    base_loss: float,
) -> list[float]:
    """Estimated loss of each candidate: ``base_loss`` plus the first-order change of every group
    whose rank differs from ``config``."""
    cums = {m: torch.cat([torch.zeros(1), g.cumsum(0)]) for m, g in grads.items()}  # prefix sums

    def delta(group: str, r_from: int, r_to: int) -> float:
        mods = space.by_name[group].modules
        # +sum_{r_from <= i < r_to} when growing, -sum_{r_to <= i < r_from} when shrinking
        return sum(float(cums[m][r_to] - cums[m][r_from]) for m in mods if m in cums)

    out = []
    for c in candidates:
        d = sum(delta(g, config[g], r) for g, r in c.items() if r != config[g])
        out.append(base_loss + d)
    return out
