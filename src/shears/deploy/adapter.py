"""A sub-adapter as one uniform-rank LoRA (pure functions) and its stock-PEFT writer.

Shears scales every sub-rank ``r_i`` by ``alpha / r_max``. Zero-padding A (r_i, in) to
(r_max, in) and B (out, r_i) to (out, r_max) adds ``B_pad @ A_pad = B @ A`` exactly (the extra
products are 0 * x), so the sub-adapter is a plain LoRA with ``r = r_max`` and
``lora_alpha = alpha``: any runtime that takes a uniform-rank LoRA loads it, at the cost of the
padding.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.io import peft_key

UNIFORM_DIR = "lora_uniform"


def pad_lora(a: torch.Tensor, b: torch.Tensor, r_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, in), B (out, r) -> A (r_max, in), B (out, r_max), padded with zeros."""
    r = a.shape[0]
    if b.shape[1] != r or r > r_max:
        raise ValueError(f"A rank {r} and B rank {b.shape[1]} must match and be <= {r_max}")
    a_pad = torch.zeros(r_max, a.shape[1], dtype=a.dtype)
    b_pad = torch.zeros(b.shape[0], r_max, dtype=b.dtype)
    a_pad[:r], b_pad[:, :r] = a, b
    return a_pad, b_pad


def uniform_state_dict(layers: dict[str, ElasticLoRALinear]) -> dict[str, torch.Tensor]:
    """PEFT-keyed tensors of every layer's active sub-adapter, zero-padded to its r_max."""
    out = {}
    for name, layer in layers.items():
        a, b = layer.active_weights()
        a_pad, b_pad = pad_lora(a.detach().cpu(), b.detach().cpu(), layer.r_max)
        out[peft_key(name, "A")], out[peft_key(name, "B")] = a_pad, b_pad.contiguous()
    return out


def write_uniform_lora(
    layers: dict[str, ElasticLoRALinear], out_dir: Path, base_model: str | None
) -> dict[str, Any]:
    """Write the active sub-adapter as a uniform-rank stock-PEFT LoRA into ``out_dir``."""
    from peft import LoraConfig

    first = next(iter(layers.values()))
    r_max = {layer.r_max for layer in layers.values()}
    if len(r_max) != 1:
        raise ValueError(f"layers disagree on r_max: {sorted(r_max)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    state = uniform_state_dict(layers)
    save_file(state, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = LoraConfig(
        r=first.r_max,
        lora_alpha=first.alpha,
        target_modules="(" + "|".join(re.escape(n) for n in sorted(layers)) + ")",
        fan_in_fan_out=first.transposed,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )
    config.save_pretrained(str(out_dir))
    return {
        "folder": UNIFORM_DIR,
        "rank": first.r_max,
        "alpha": first.alpha,
        "active_ranks": {n: layer.active_rank for n, layer in layers.items()},
        "parameters": sum(t.numel() for t in state.values()),
    }
