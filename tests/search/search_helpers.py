"""Helpers for the search tests: a tiny model with a random (non-zero) elastic super-adapter."""

from __future__ import annotations

import torch

from conftest import tiny_model
from shears.adapters import SuperAdapter
from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.elastic_lora import inject_elastic_lora, remove_elastic_lora
from shears.adapters.search_space import SearchSpace
from shears.models import save_model


def tiny_super_adapter(
    arch: str = "llama", widths=(8, 6, 4), seed: int = 0, sparse=False, **model_kw
):
    """``(model, layers, space)``: a tiny ``arch`` model with a random elastic adapter whose B is
    non-zero, so that every rank slice changes the output. ``model_kw``: for ``tiny_model``."""
    model = tiny_model(arch, seed, **model_kw)
    targets = {
        "gpt2": ["c_attn", "c_fc"],
        "opt": ["q_proj", "v_proj", "fc1"],
        "gpt_neox": ["query_key_value", "dense_h_to_4h"],
    }.get(arch, ["q_proj", "v_proj", "up_proj"])
    cfg = ElasticLoraConfig(targets=targets, sparse_adapter=sparse)
    space = SearchSpace.build(model, cfg, SpaceConfig(groups=[], widths=list(widths)))
    layers = inject_elastic_lora(
        model, space.modules, space.r_max, cfg.alpha, 0.0, sparse_adapter=sparse
    )
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for lay in layers.values():
            lay.lora_B.copy_(torch.randn(lay.lora_B.shape, generator=gen) * 0.05)
    model.eval()
    return model, layers, space


def config_from_key(space: SearchSpace, key: str) -> dict[str, int]:
    """The config of a ``space_ops.config_key`` (its ranks in the space's group order)."""
    ranks = [int(r) for r in key.split(",")]
    return {g.name: r for g, r in zip(space.groups, ranks, strict=True)}


def random_batches(n_batches=2, batch=3, seq=12, vocab=128, seed=0):
    """Right-padded batches with labels on a suffix of each row (the 'answer')."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(1, vocab, (batch, seq), generator=gen)
        mask = torch.ones(batch, seq, dtype=torch.long)
        labels = ids.clone()
        for i in range(batch):
            n = seq - i  # rows of different lengths
            mask[i, n:] = 0
            ids[i, n:] = 0
            labels[i, n:] = -100
            labels[i, : n // 2] = -100  # the prompt
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def save_super_adapter(root, tok) -> None:
    """A tiny LLaMA saved in ``root/model`` and a random super-adapter on it (non-zero B, widths
    [8, 6, 4] on q, v and up) in ``root/adapter``, for end-to-end ``shears search`` runs."""
    model = tiny_model("llama", tokenizer=tok)
    save_model(model, tok, root / "model")
    cfg = ElasticLoraConfig(targets=["q_proj", "v_proj", "up_proj"])
    space = SpaceConfig(groups=[], widths=[8, 6, 4])
    adapter = SuperAdapter.create(model, cfg, space, base_model=str(root / "model"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for lay in adapter.layers.values():
            lay.lora_B.copy_(torch.randn(lay.lora_B.shape, generator=gen) * 0.05)
    adapter.save(root / "adapter")
    remove_elastic_lora(model)
