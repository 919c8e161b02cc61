"""Logit checks of an export: the written PEFT adapter (loaded by stock PEFT) and the merged
model against the in-memory sub-adapter, on fixed pseudo-random probe tokens.

A check that fails where the export must be exact raises a ShearsError before anything is
written; every measurement goes into a :class:`~shears.export.result.Verification`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear, remove_elastic_lora
from shears.errors import ShearsError
from shears.export.merge import MergeStats
from shears.export.result import Verification
from shears.models import get_submodule_parent

logger = logging.getLogger(__name__)

PROBE_SHAPE = (2, 16)  # (batch, seq) of random tokens for the logit checks


@torch.no_grad()
def probe_ids(model: nn.Module, shape: tuple[int, int] = PROBE_SHAPE) -> torch.Tensor:
    """Fixed pseudo-random token ids (batch, seq) inside the model's vocabulary."""
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, vocab, shape, generator=gen)
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.float().cpu()  # (batch, seq, vocab)


def _tolerance(ref: torch.Tensor, dtype: torch.dtype) -> float:
    rel = 1e-4 if dtype == torch.float32 else 3e-2
    return rel * max(1.0, float(ref.abs().max()))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@dataclass
class Probe:
    """Probe tokens, the in-memory sub-adapter's logits on them and the allowed difference."""

    ids: torch.Tensor  # (batch, seq)
    ref: torch.Tensor  # (batch, seq, vocab)
    tol: float

    @classmethod
    def of(cls, model: nn.Module, dtype: torch.dtype) -> Probe:
        ids = probe_ids(model)
        ref = logits_of(model, ids)
        return cls(ids, ref, _tolerance(ref, dtype))

    def verification(self) -> Verification:
        """An empty record of the checks on this probe."""
        return Verification(list(self.ids.shape), self.tol)


def _reattach(model: nn.Module, layers: dict[str, ElasticLoRALinear]) -> None:
    """Put the elastic wrappers back around their base linears (after a stock-PEFT check)."""
    for name, layer in layers.items():
        parent, attr = get_submodule_parent(model, name)
        if getattr(parent, attr) is not layer.base_layer:
            raise RuntimeError(f"{name}: the base linear was replaced during the PEFT check")
        setattr(parent, attr, layer)


@torch.no_grad()
def stock_peft_logits(
    model: nn.Module, layers: dict[str, ElasticLoRALinear], adapter_dir: Path, ids: torch.Tensor
) -> torch.Tensor:
    """Logits of ``model``'s bare base with the adapter in ``adapter_dir`` loaded by stock PEFT.

    The elastic wrappers are taken off for the check and put back afterwards (no copy of the
    model is made).
    """
    from peft import PeftModel

    remove_elastic_lora(model)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
        peft_model.eval()
        out = logits_of(peft_model, ids)
        peft_model.unload()
    finally:
        _reattach(model, layers)
    return out


def _unmasked_logits(
    model: nn.Module, layers: dict[str, ElasticLoRALinear], ids: torch.Tensor
) -> torch.Tensor:
    """Logits of the mask-aware sub-adapter with its mask switched off (for the comparison)."""
    for layer in layers.values():
        layer.sparse_adapter = False
    try:
        return logits_of(model, ids)
    finally:
        for layer in layers.values():
            layer.sparse_adapter = True


def verify_peft(
    model: nn.Module,
    layers: dict[str, ElasticLoRALinear],
    adapter_dir: Path,
    probe: Probe,
    mask_aware: bool,
    ver: Verification,
) -> None:
    """Load the written adapter with stock PEFT and compare; exact unless ``mask_aware`` (stock
    PEFT cannot apply the mask: then both differences are measured and a warning says so)."""
    ids = probe.ids
    peft_logits = stock_peft_logits(model, layers, adapter_dir, ids)
    diff = _max_diff(peft_logits, probe.ref)
    ver.stock_peft_max_abs_logit_diff = diff
    if not mask_aware:
        if diff > probe.tol:
            raise ShearsError(
                f"stock PEFT does not reproduce the sub-adapter (max |logit diff| {diff:.3g} > "
                f"{probe.tol:.3g}); nothing was written"
            )
        ver.lines.append(
            f"stock PEFT `PeftModel.from_pretrained` reproduces the sub-adapter: max |logit "
            f"difference| {diff:.3g} on {ids.shape[0]}x{ids.shape[1]} probe tokens"
        )
        logger.info("stock PEFT check passed: max |logit diff| %.3g", diff)
        return
    # mask-aware: stock PEFT applies the unmasked delta; measure both facts
    diff_unmasked = _max_diff(peft_logits, _unmasked_logits(model, layers, ids))
    ver.stock_peft_vs_unmasked_max_abs_logit_diff = diff_unmasked
    ver.lines.append(
        f"stock PEFT (unmerged) differs from the mask-aware sub-adapter by max |logit diff| "
        f"{diff:.3g}: it adds the unmasked delta (its logits equal the same adapter without the "
        f"mask to {diff_unmasked:.3g}); use the merged model"
    )
    logger.warning(
        "mask-aware adapter: stock PEFT cannot apply the mask; loaded unmerged it differs from "
        "the trained sub-adapter by max |logit diff| %.3g. Use --merge (keeps sparsity).",
        diff,
    )


def verify_merged(model: nn.Module, probe: Probe, stats: MergeStats, ver: Verification) -> None:
    """Compare the merged model; exact unless a masked merge dropped part of the delta."""
    diff = _max_diff(logits_of(model, probe.ids), probe.ref)
    ver.merged_max_abs_logit_diff = diff
    exact = stats.mask_aware or not stats.keep_sparsity
    if exact and diff > probe.tol:
        raise ShearsError(
            f"the merged model does not reproduce the sub-adapter (max |logit diff| {diff:.3g} > "
            f"{probe.tol:.3g}); nothing was written"
        )
    if exact:
        ver.lines.append(
            f"the merged model reproduces the sub-adapter: max |logit difference| {diff:.3g}"
        )
    else:
        ver.lines.append(
            f"the masked merge of an adapter not trained mask-aware changes the logits by max "
            f"|difference| {diff:.3g} (the delta outside the mask was dropped)"
        )
