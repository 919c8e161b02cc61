"""Merging: masked merge keeps exactly the base zeros; plain merge is base + delta (dense)."""

from __future__ import annotations

import pytest
import torch
from export_helpers import make_super_adapter, mixed_config, our_logits, sparse_tiny_model
from transformers import AutoModelForCausalLM

from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.elastic_lora import inject_elastic_lora, lora_delta
from shears.adapters.search_space import SearchSpace
from shears.errors import ShearsError
from shears.export import ExportConfig, merge_adapter, run_export
from shears.models import find_targets, weight_out_in

IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))


def _adapted(sparse_adapter: bool, arch: str = "llama"):
    model = sparse_tiny_model(arch, 2)
    cfg = ElasticLoraConfig(alpha=16.0, dropout=0.0, sparse_adapter=sparse_adapter)
    space_cfg = SpaceConfig(widths=[8, 4])
    if arch == "gpt2":
        cfg = ElasticLoraConfig(targets=["c_attn", "c_fc"], alpha=16.0, dropout=0.0)
        space_cfg = SpaceConfig(groups=[], widths=[8, 4])
    space = SearchSpace.build(model, cfg, space_cfg)
    layers = inject_elastic_lora(model, space.modules, 8, 16.0, 0.0, sparse_adapter)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B.normal_(std=0.2)
    config = mixed_config(space)
    space.apply(layers, config)
    expected = {}
    for name, layer in layers.items():
        w = weight_out_in(layer.base_layer).clone()
        d = lora_delta(layer.lora_A, layer.lora_B, layer.active_rank, layer.scaling).detach()
        expected[name] = (w, d)
    return model, layers, expected


@pytest.mark.parametrize("mask_aware", [True, False])
def test_masked_merge_keeps_exact_zeros(mask_aware):
    model, layers, expected = _adapted(mask_aware)
    ref = model(input_ids=IDS).logits
    stats = merge_adapter(model, keep_sparsity=True)
    targets = find_targets(model)
    out_sq = d_sq = w_sq = 0.0
    for name, (w0, d) in expected.items():
        w1 = weight_out_in(targets[name])
        assert torch.equal(w1 == 0, w0 == 0), name  # the very same zeros
        assert torch.allclose(w1, w0 + d * (w0 != 0), atol=1e-6, rtol=0)
        out_sq += float((d * (w0 == 0)).pow(2).sum())
        d_sq += float(d.pow(2).sum())
        w_sq += float(w0.pow(2).sum())
    assert stats.zeros_lost == 0 and stats.target_zeros_after == stats.target_zeros_before
    assert stats.target_sparsity_before == pytest.approx(0.5, abs=0.02)
    assert stats.model_nonzero_after == stats.model_nonzero_before
    if mask_aware:  # the trained function is the masked one: logits unchanged
        assert stats.outside_mask_delta_rel is None
        assert torch.allclose(model(input_ids=IDS).logits, ref, atol=1e-5, rtol=0)
    else:  # the dropped part is reported
        assert stats.outside_mask_delta_rel == pytest.approx((out_sq / d_sq) ** 0.5, rel=1e-4)
        assert stats.outside_mask_delta_rel_weight == pytest.approx(
            (out_sq / w_sq) ** 0.5, rel=1e-4
        )
        assert "not trained mask-aware" in stats.summary()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_plain_merge_is_base_plus_delta(arch):
    model, layers, expected = _adapted(False, arch)
    ref = model(input_ids=IDS).logits
    stats = merge_adapter(model, keep_sparsity=False)
    targets = find_targets(model)
    for name, (w0, d) in expected.items():
        assert torch.allclose(weight_out_in(targets[name]), w0 + d, atol=1e-6, rtol=0)
    assert torch.allclose(model(input_ids=IDS).logits, ref, atol=1e-5, rtol=0)
    assert stats.target_sparsity_after < 0.01 < 0.4 < stats.target_sparsity_before
    assert stats.zeros_lost > 0
    assert stats.model_nonzero_after > stats.model_nonzero_before
    assert "made the model dense" in stats.summary()
    assert not any(type(m).__name__ == "ElasticLoRALinear" for m in model.modules())


def test_mask_aware_refuses_plain_merge():
    model, _, _ = _adapted(True)
    with pytest.raises(ShearsError, match="mask-aware"):
        merge_adapter(model, keep_sparsity=False)


@pytest.mark.parametrize("keep", [None, True])
def test_run_export_merge(tmp_path, tiny_tokenizer, keep):
    """--merge writes a loadable HF model; keep-sparsity keeps zeros; results say what happened."""
    base, adapter, space = make_super_adapter(tmp_path, tiny_tokenizer)
    out = tmp_path / "out"
    results = run_export(
        ExportConfig(
            adapter=str(adapter),
            output_dir=str(out),
            sub_adapter="heuristic",
            merge=True,
            keep_sparsity=keep,
        )
    )
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    base_model = AutoModelForCausalLM.from_pretrained(base).eval()
    mt, bt = find_targets(merged), find_targets(base_model)
    m = results.merge
    assert (out / "merged" / "README.md").is_file()
    assert (out / "merged" / "tokenizer_config.json").is_file()
    if keep:
        for name in space.modules:
            assert torch.equal(weight_out_in(mt[name]) == 0, weight_out_in(bt[name]) == 0)
        assert m.target_sparsity_after == m.target_sparsity_before
        assert m.outside_mask_delta_rel > 0
        assert "masked merge kept every base zero" in (out / "README.md").read_text()
    else:  # a plain merge reproduces the sub-adapter and says the model became dense
        with torch.no_grad():
            got = merged(input_ids=IDS).logits
        want = our_logits(base, adapter, space.heuristic(), IDS)
        assert torch.allclose(got, want, atol=1e-5, rtol=0)
        assert m.target_sparsity_after < 0.01
        assert results.verification.merged_max_abs_logit_diff < 1e-5
        assert "plain merge made the model dense" in (out / "README.md").read_text()


def test_merge_summary_warns_of_densifying_only_a_sparse_base():
    """A plain merge into a pruned base says the model became dense; into a dense base (a
    distillation teacher: 0.03 % natural zeros) it does not cry wolf."""
    from shears.export.merge import MergeStats

    def stats(zeros_before: int) -> MergeStats:
        return MergeStats(False, False, 10_000, zeros_before, 0, zeros_before, 0, 20_000,
                          20_000 - zeros_before, 20_000, None, None)  # fmt: skip

    assert stats(4_000).summary().startswith("plain merge made the model dense: ")
    dense = stats(3).summary()
    assert dense.startswith("plain merge into a dense base: ") and "0.03% -> 0.00%" in dense
