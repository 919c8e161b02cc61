"""Quantize a converted IR with NNCF: int8 weights only, or int8 weights and activations (W8A8).

Both keep every pruned zero exact: weights are quantized symmetrically per output channel
(``q = round(w / s)``), so ``w == 0`` gives ``q == 0``; SmoothQuant (off by default) scales
weight columns, which keeps zeros too. :func:`shears.deploy.runtime.ir_weight_sparsity` counts
them in the written IR.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import torch

from shears.deploy.convert import ATTENTION_MASK, INPUT_IDS, POSITION_IDS, KVLayout, causal_mask

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8-weights", "w8a8", "w8a8-sparse")


def calibration_items(windows: torch.Tensor, layout: KVLayout) -> list[dict[str, np.ndarray]]:
    """Prefill inputs of the converted graph, one per calibration window (n, seq)."""
    items = []
    for row in windows:
        q = int(row.numel())
        item = {
            INPUT_IDS: row.numpy().astype(np.int64)[None],
            POSITION_IDS: np.arange(q, dtype=np.int64)[None],
            ATTENTION_MASK: causal_mask(q, 0),
        }
        item.update(zip(layout.names("past"), layout.empty(), strict=True))
        items.append(item)
    return items


def adapter_pattern(modules: list[str] | None) -> str | None:
    """A regex of the node names of a separate adapter's own matmuls: the linears traced inside
    each elastic module (``...<module>/aten::linear/MatMul_1``), not its ``base_layer``'s."""
    if not modules:
        return None
    return r".*\.(" + "|".join(re.escape(m) for m in modules) + r")/aten::linear/.*"


def float_pattern(names: list[str] | None) -> str | None:
    """A regex of the node names of every matmul inside modules whose name ends with one of
    ``names`` (``down_proj`` matches ``...layers.0.mlp.down_proj/aten::linear/MatMul`` and a
    separate adapter's ``...down_proj.base_layer/...``)."""
    if not names:
        return None
    return r".*\.(" + "|".join(re.escape(n) for n in names) + r")[./].*"


def quantize(
    ov_model: Any,
    precision: str,
    items: list[dict[str, np.ndarray]] | None = None,
    smooth_quant_alpha: float | None = None,
    adapter_modules: list[str] | None = None,
    float_modules: list[str] | None = None,
) -> Any:
    """``ov_model`` in ``precision`` (one of :data:`PRECISIONS`; ``fp32`` returns it as is).

    ``items``: calibration inputs for W8A8 (:func:`calibration_items`); ``adapter_modules``:
    the modules whose separate adapter's matmuls stay float in W8A8; ``float_modules``: module
    name suffixes whose matmuls keep float activations in W8A8 (their weights int8-compressed).
    """
    if precision == "fp32":
        return ov_model
    import nncf

    if precision == "int8-weights":
        return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_SYM)
    if not items:
        raise ValueError("W8A8 needs calibration items")
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    alpha = -1.0 if smooth_quant_alpha is None else smooth_quant_alpha  # -1 turns it off
    patterns = [p for p in (adapter_pattern(adapter_modules), float_pattern(float_modules)) if p]
    ignored = nncf.IgnoredScope(patterns=patterns, validate=False)
    quantized = nncf.quantize(
        ov_model,
        nncf.Dataset(items),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(items),
        fast_bias_correction=True,
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha)
        ),
        ignored_scope=ignored,
    )
    if not float_modules:
        return quantized
    # the float-activation matmuls still get int8 weights (symmetric per channel: zeros stay)
    return nncf.compress_weights(quantized, mode=nncf.CompressWeightsMode.INT8_SYM)
