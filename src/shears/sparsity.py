"""Counting zeros: every sparsity and parameter number shears reports (prune, eval, export).

Pure functions over tensors and modules. As the paper counts for its 1.91x figure: every
parameter counts (embeddings, head, norms, adapters) and tied weights count once. An elastic
super-adapter counts whole (``adapters="all"``), at its **active** rank (``"active"``:
``lora_A[:r]``, ``lora_B[:, :r]``, the sub-adapter being evaluated) or not at all (``"none"``:
the bare model, as after a merge).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

import torch
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.errors import ShearsError
from shears.models import find_decoder_blocks, is_linear

Adapters = Literal["all", "active", "none"]


# ---------------------------------------------------------------------------- tensors


def nonzeros(t: torch.Tensor) -> int:
    """Entries of ``t`` that are not exactly zero."""
    return int(torch.count_nonzero(t.detach()).item())


def zeros(t: torch.Tensor) -> int:
    """Exact zeros of ``t``."""
    return t.numel() - nonzeros(t)


def weight_stats(w: torch.Tensor) -> dict[str, Any]:
    """``{"zeros", "numel", "sparsity"}`` of one (non-empty) weight."""
    z = zeros(w)
    return {"zeros": z, "numel": w.numel(), "sparsity": z / w.numel()}


def total_stats(per_layer: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`weight_stats` summed over layers: ``{"zeros", "numel", "sparsity"}``."""
    z = sum(v["zeros"] for v in per_layer.values())
    n = sum(v["numel"] for v in per_layer.values())
    return {"zeros": z, "numel": n, "sparsity": z / n if n else 0.0}


def zero_fraction(weights: Iterable[torch.Tensor]) -> float | None:
    """Zeros over entries of ``weights`` together (``None`` when there are no entries)."""
    z = n = 0
    for w in weights:
        z, n = z + zeros(w), n + w.numel()
    return z / n if n else None


# ---------------------------------------------------------------------------- models


def _counted(model: nn.Module, adapters: Adapters) -> Iterator[tuple[torch.Tensor, bool]]:
    """Every parameter once, as counted, with whether it is an adapter tensor (elastic or
    PEFT ``lora_``)."""
    elastic: dict[int, torch.Tensor] = {}
    for m in model.modules():
        if isinstance(m, ElasticLoRALinear):
            r = m.active_rank if adapters == "active" else m.r_max
            elastic[id(m.lora_A)] = m.lora_A.detach()[:r]  # (r, in)
            elastic[id(m.lora_B)] = m.lora_B.detach()[:, :r]  # (out, r)
    for name, p in model.named_parameters():  # tied weights once
        if id(p) not in elastic:
            yield p.detach(), "lora_" in name
        elif adapters != "none":
            yield elastic[id(p)], True


def count_parameters(model: nn.Module, adapters: Adapters = "all") -> dict[str, int]:
    """``{"parameters", "nonzero_parameters"}`` of ``model`` (elastic adapters per ``adapters``)."""
    total = nonzero = 0
    for t, _ in _counted(model, adapters):
        total, nonzero = total + t.numel(), nonzero + nonzeros(t)
    return {"parameters": total, "nonzero_parameters": nonzero}


def count_nonzero_parameters(model: nn.Module) -> dict[str, float | int | None]:
    """What an evaluation reports: totals with elastic adapters at their active rank.

    ``parameters``, ``nonzero_parameters``, ``sparsity`` (1 - nonzero / parameters),
    ``adapter_parameters`` / ``adapter_nonzero_parameters`` (LoRA tensors, elastic or PEFT), and
    ``linear_sparsity`` (:func:`linear_sparsity`).
    """
    total = nonzero = a_total = a_nonzero = 0
    for t, is_adapter in _counted(model, "active"):
        n, nz = t.numel(), nonzeros(t)
        total, nonzero = total + n, nonzero + nz
        if is_adapter:
            a_total, a_nonzero = a_total + n, a_nonzero + nz
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
    (what pruning targets; adapter tensors excluded); ``None`` without decoder blocks."""
    try:
        prefix, _ = find_decoder_blocks(model)
    except ShearsError:
        return None
    return zero_fraction(
        m.weight
        for name, m in model.named_modules()
        if name.startswith(prefix + ".") and is_linear(m) and "lora_" not in name
    )
