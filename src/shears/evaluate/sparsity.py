"""Parameter counts of what is evaluated, as the paper counts them for its 1.91x figure.

All parameters count (embeddings, head, norms, adapter); tied weights count once; an elastic
super-adapter counts at its **active** rank (``lora_A[:r]``, ``lora_B[:, :r]``), since that is the
sub-adapter being evaluated.
"""

from __future__ import annotations

import torch
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.errors import ShearsError
from shears.models import find_decoder_blocks, is_linear


def _nonzero(t: torch.Tensor) -> int:
    return int(torch.count_nonzero(t.detach()).item())


def count_nonzero_parameters(model: nn.Module) -> dict[str, float | int | None]:
    """Totals over every parameter of ``model``, elastic adapters at their active rank.

    Returns ``parameters``, ``nonzero_parameters``, ``sparsity`` (1 - nonzero / parameters),
    ``adapter_parameters`` / ``adapter_nonzero_parameters`` (LoRA tensors, elastic or PEFT), and
    ``linear_sparsity``: the fraction of zeros in the base weights of the decoder blocks' linear
    layers (what pruning targets), or None when the model has no decoder blocks.
    """
    # elastic tensors -> the slice that the active sub-adapter uses
    active: dict[int, torch.Tensor] = {}
    for m in model.modules():
        if isinstance(m, ElasticLoRALinear):
            r = m.active_rank
            active[id(m.lora_A)] = m.lora_A.detach()[:r]  # (r, in)
            active[id(m.lora_B)] = m.lora_B.detach()[:, :r]  # (out, r)
    seen: set[int] = set()
    total = nonzero = a_total = a_nonzero = 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:  # tied weights count once
            continue
        seen.add(id(p))
        t = active.get(id(p), p.detach())
        n, nz = t.numel(), _nonzero(t)
        total += n
        nonzero += nz
        if id(p) in active or "lora_" in name:
            a_total += n
            a_nonzero += nz
    return {
        "parameters": total,
        "nonzero_parameters": nonzero,
        "sparsity": 1.0 - nonzero / total if total else 0.0,
        "adapter_parameters": a_total,
        "adapter_nonzero_parameters": a_nonzero,
        "linear_sparsity": linear_sparsity(model),
    }


def linear_sparsity(model: nn.Module) -> float | None:
    """Fraction of exact zeros over the base weights of the linear layers in the decoder blocks
    (adapter tensors excluded)."""
    try:
        prefix, _ = find_decoder_blocks(model)
    except ShearsError:
        return None
    zeros = total = 0
    for name, m in model.named_modules():
        if not name.startswith(prefix + ".") or not is_linear(m) or "lora_" in name:
            continue
        w = m.weight.detach()
        total += w.numel()
        zeros += w.numel() - _nonzero(w)
    return zeros / total if total else None
