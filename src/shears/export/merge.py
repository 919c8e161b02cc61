"""Merge the active sub-adapter into the base weights, keeping (or reporting the loss of) sparsity.

A plain merge ``W + scale * B A`` fills the zeros of a pruned ``W``: the model becomes dense.
A masked merge ``W + M * (scale * B A)`` (``M = W != 0``; SQFT's SparsePEFT) keeps exactly the
base zeros. For an adapter that was *not* trained mask-aware, the masked merge drops the part of
the delta outside the mask; :func:`outside_mask_norms` measures how large that part is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from shears.adapters.elastic_lora import (
    ElasticLoRALinear,
    elastic_layers,
    lora_delta,
    remove_elastic_lora,
)
from shears.errors import ShearsError
from shears.models import weight_out_in
from shears.sparsity import count_parameters, zeros

logger = logging.getLogger(__name__)


@torch.no_grad()
def outside_mask_norms(delta: torch.Tensor, weight: torch.Tensor) -> tuple[float, float, float]:
    """Squared Frobenius norms ``(||D * ~M||^2, ||D||^2, ||W||^2)`` with ``M = W != 0``.

    delta, weight: (out, in), same orientation.
    """
    d = delta.float()
    outside = d[weight == 0]
    return (
        float(outside.pow(2).sum()),
        float(d.pow(2).sum()),
        float(weight.float().pow(2).sum()),
    )


@dataclass
class MergeStats:
    """What a merge did to the target layers and to the whole model."""

    keep_sparsity: bool
    mask_aware: bool
    target_parameters: int
    target_zeros_before: int
    target_zeros_after: int
    zeros_lost: int  # base zeros that became non-zero
    zeros_gained: int  # non-zero weights that became exactly zero (rounding)
    model_parameters: int
    model_nonzero_before: int
    model_nonzero_after: int
    outside_mask_delta_rel: float | None  # ||D * ~M||_F / ||D||_F over all targets
    outside_mask_delta_rel_weight: float | None  # ||D * ~M||_F / ||W||_F over all targets

    @property
    def target_sparsity_before(self) -> float:
        return self.target_zeros_before / max(self.target_parameters, 1)

    @property
    def target_sparsity_after(self) -> float:
        return self.target_zeros_after / max(self.target_parameters, 1)

    @property
    def model_sparsity_before(self) -> float:
        return 1 - self.model_nonzero_before / max(self.model_parameters, 1)

    @property
    def model_sparsity_after(self) -> float:
        return 1 - self.model_nonzero_after / max(self.model_parameters, 1)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k in (
            "target_sparsity_before",
            "target_sparsity_after",
            "model_sparsity_before",
            "model_sparsity_after",
        ):
            out[k] = getattr(self, k)
        return out

    def summary(self) -> str:
        """One line for the log and the model card."""
        s = (
            f"target-layer sparsity {self.target_sparsity_before:.2%} -> "
            f"{self.target_sparsity_after:.2%}; model non-zero parameters "
            f"{self.model_nonzero_before:,} -> {self.model_nonzero_after:,}"
        )
        if self.keep_sparsity:
            s = "masked merge kept every base zero: " + s
            if self.outside_mask_delta_rel is not None:
                s += (
                    f"; the adapter was not trained mask-aware: the dropped delta outside the mask "
                    f"is {self.outside_mask_delta_rel:.2%} of the delta's Frobenius norm "
                    f"({self.outside_mask_delta_rel_weight:.3%} of the weights')"
                )
        elif self.target_sparsity_before >= DENSE_BELOW:
            s = "plain merge made the model dense: " + s
        else:  # a dense base (a distillation teacher, say): nothing to warn about
            s = "plain merge into a dense base: " + s
        return s


# below this target-layer sparsity a base counts as dense (a few natural zeros only)
DENSE_BELOW = 0.01


@dataclass
class _Tally:
    """Counts and squared norms summed over the merged target layers."""

    params: int = 0
    zeros_before: int = 0
    zeros_after: int = 0
    lost: int = 0  # base zeros that became non-zero
    gained: int = 0  # non-zero weights that became exactly zero
    outside_sq: float = 0.0  # ||D * ~M||^2
    delta_sq: float = 0.0  # ||D||^2
    weight_sq: float = 0.0  # ||W||^2


@torch.no_grad()
def _merge_layer(layer: ElasticLoRALinear, keep: bool, t: _Tally) -> None:
    """Merge one layer (masked with ``keep``), adding what changed to ``t``."""
    w = weight_out_in(layer.base_layer)  # (out, in)
    mask = w != 0
    t.params += w.numel()
    t.zeros_before += zeros(w)
    if keep and not layer.sparse_adapter:
        raw = lora_delta(layer.lora_A, layer.lora_B, layer.active_rank, layer.scaling)
        o, d, ww = outside_mask_norms(raw, w)
        t.outside_sq, t.delta_sq, t.weight_sq = t.outside_sq + o, t.delta_sq + d, t.weight_sq + ww
    layer.merge(keep)
    w_after = weight_out_in(layer.base_layer)
    t.zeros_after += zeros(w_after)
    t.lost += int(((w_after != 0) & ~mask).sum())
    t.gained += int(((w_after == 0) & mask).sum())


def _ratio(num_sq: float, den_sq: float, report: bool) -> float | None:
    """``sqrt(num_sq / den_sq)`` (0.0 for an empty denominator); ``None`` when not reported."""
    if not report:
        return None
    return math.sqrt(num_sq / den_sq) if den_sq > 0 else 0.0


def _log_merge(stats: MergeStats, report_outside: bool) -> None:
    (logger.info if stats.keep_sparsity else logger.warning)("%s", stats.summary())
    if report_outside and stats.outside_mask_delta_rel:
        logger.warning(
            "the masked merge drops %.1f %% of the adapter's update (Frobenius norm of the delta "
            "outside the base's non-zero mask): the adapter was not trained mask-aware, so the "
            "merged model differs from the sub-adapter; train with --sparse-adapter, or merge "
            "with --no-keep-sparsity (dense) or use the unmerged adapter",
            100 * stats.outside_mask_delta_rel,
        )


@torch.no_grad()
def merge_adapter(model: nn.Module, keep_sparsity: bool | None = None) -> MergeStats:
    """Merge each elastic layer's active sub-adapter into its base weight and remove the wrappers.

    ``keep_sparsity``: mask the delta with the base weight's non-zero mask (default: only for a
    mask-aware adapter). A mask-aware adapter cannot be merged without its mask (its trained
    function *is* the masked one): that raises a ShearsError.
    """
    layers = elastic_layers(model)
    if not layers:
        raise ShearsError("the model has no elastic LoRA layers to merge")
    mask_aware = any(layer.sparse_adapter for layer in layers.values())
    if mask_aware and keep_sparsity is False:
        raise ShearsError(
            "the adapter was trained mask-aware (sparse_adapter); merging it without the mask "
            "would change the model: drop --no-keep-sparsity"
        )
    keep = mask_aware if keep_sparsity is None else keep_sparsity
    # count the bare model: elastic layers' A/B are not part of the merged model
    before = count_parameters(model, adapters="none")
    t = _Tally()
    for layer in layers.values():
        _merge_layer(layer, keep, t)
    remove_elastic_lora(model)  # layers are merged already: puts the base linears back
    after = count_parameters(model)
    report_outside = keep and not mask_aware
    stats = MergeStats(
        keep_sparsity=keep,
        mask_aware=mask_aware,
        target_parameters=t.params,
        target_zeros_before=t.zeros_before,
        target_zeros_after=t.zeros_after,
        zeros_lost=t.lost,
        zeros_gained=t.gained,
        model_parameters=after["parameters"],
        model_nonzero_before=before["nonzero_parameters"],
        model_nonzero_after=after["nonzero_parameters"],
        outside_mask_delta_rel=_ratio(t.outside_sq, t.delta_sq, report_outside),
        outside_mask_delta_rel_weight=_ratio(t.outside_sq, t.weight_sq, report_outside),
    )
    _log_merge(stats, report_outside)
    return stats
