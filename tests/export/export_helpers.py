"""Tiny sparse models + super-adapters with random non-zero B, saved to disk for export tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_config
from shears.adapters import ElasticLoraConfig, SearchSpace, SpaceConfig, SuperAdapter
from shears.models import find_targets, weight_out_in


def sparse_tiny_model(arch: str = "llama", n_layers: int = 2, seed: int = 0, **overrides):
    """A tiny random model whose decoder-block linears have exactly half of every row zeroed."""
    cfg = tiny_config(arch)
    key = "n_layer" if arch == "gpt2" else "num_hidden_layers"
    setattr(cfg, key, n_layers)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    if hasattr(cfg, "layer_types") and getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = cfg.layer_types[:1] * n_layers
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for m in find_targets(model).values():
            w = weight_out_in(m)  # (out, in) view
            drop = w.abs().argsort(dim=1)[:, : w.shape[1] // 2]  # (out, in/2) lowest per row
            w.scatter_(1, drop, 0.0)
    return model


def make_super_adapter(
    root: Path,
    tokenizer,
    arch: str = "llama",
    n_layers: int = 2,
    space_cfg: SpaceConfig | None = None,
    sparse_adapter: bool = False,
    adapter_cfg: ElasticLoraConfig | None = None,
    seed: int = 0,
    model_overrides: dict | None = None,
) -> tuple[Path, Path, SearchSpace]:
    """Save a sparse tiny base in ``root/base`` and a super-adapter (random B) in ``root/adapter``."""
    model = sparse_tiny_model(arch, n_layers, seed, **(model_overrides or {}))
    base_dir, adapter_dir = root / "base", root / "adapter"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    adapter_cfg = adapter_cfg or ElasticLoraConfig(
        alpha=16.0, dropout=0.0, sparse_adapter=sparse_adapter
    )
    space_cfg = space_cfg or SpaceConfig(widths=[8, 6, 4])
    adapter = SuperAdapter.create(model, adapter_cfg, space_cfg, base_model=str(base_dir))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.2)
    adapter.save(adapter_dir)
    return base_dir, adapter_dir, adapter.space


def mixed_config(space: SearchSpace) -> dict[str, int]:
    """Every width used, neighbours differ: group k takes widths[(7k + k // 3 + 1) % n]."""
    return {
        g.name: g.widths[(k * 7 + k // 3 + 1) % len(g.widths)] for k, g in enumerate(space.groups)
    }


@torch.no_grad()
def our_logits(base_dir: Path, adapter_dir: Path, config: dict, ids: torch.Tensor, mask=None):
    """Logits of the in-memory elastic sub-adapter ``config`` on a fresh copy of the base.

    ``mask``: override the layers' ``sparse_adapter`` flag (None keeps the trained one).
    """
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    loaded = SuperAdapter.load(model, adapter_dir, dropout=0.0)
    layers = loaded.layers
    loaded.space.apply(layers, config)
    if mask is not None:
        for layer in layers.values():
            layer.sparse_adapter = mask
    return model(input_ids=ids).logits


@torch.no_grad()
def stock_peft_logits(base_dir: Path, out_dir: Path, ids: torch.Tensor):
    """Logits of a fresh base with ``out_dir`` loaded by unpatched ``PeftModel.from_pretrained``."""
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, str(out_dir)).eval()
    return model(input_ids=ids).logits, model
