"""Stock-PEFT round trips: the exported sub-adapter reproduces our in-memory logits."""

from __future__ import annotations

import json

import pytest
import torch
from export_helpers import make_super_adapter, mixed_config, our_logits, stock_peft_logits
from peft.utils.other import get_pattern_key

from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.export import ExportConfig, pattern_keys, run_export

IDS = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(0))


def _export(adapter, out, sub, **kw):
    return run_export(
        ExportConfig(adapter=str(adapter), output_dir=str(out), sub_adapter=sub, **kw)
    )


def test_round_trip_mixed_ranks_12_layers(tmp_path, tiny_tokenizer):
    base, adapter, space = make_super_adapter(tmp_path, tiny_tokenizer, n_layers=12)
    config = mixed_config(space)
    # layers 1 and 11 get different ranks for the same module, so a key collision would show
    assert config["1.up_proj"] != config["11.up_proj"]
    (tmp_path / "widths.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    results = _export(adapter, out, str(tmp_path / "widths.json"))

    ours = our_logits(base, adapter, config, IDS)
    theirs, peft_model = stock_peft_logits(base, out, IDS)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    # a sub-adapter really differs from the base and from r_max
    assert (ours - our_logits(base, adapter, space.maximal(), IDS)).abs().max() > 1e-3

    ranks = space.module_ranks(config)
    lora_cfg = json.loads((out / "adapter_config.json").read_text())
    assert (
        lora_cfg["rank_pattern"]["model.layers.1.mlp.up_proj"]
        == ranks["model.layers.1.mlp.up_proj"]
    )
    for name, module in peft_model.base_model.model.named_modules():
        if name in ranks:
            r = ranks[name]
            assert module.r["default"] == r, name
            assert module.lora_A["default"].weight.shape[0] == r
            assert module.scaling["default"] == pytest.approx(16.0 / 8)
    assert results.verification.stock_peft_max_abs_logit_diff < 1e-5
    assert results.sub_adapter.config == config
    assert results.parameters["sub_adapter_parameters"] == space.adapter_parameters(config)


def test_gpt2_conv1d_round_trip(tmp_path, tiny_tokenizer):
    adapter_cfg = ElasticLoraConfig(
        targets=["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], alpha=8.0, dropout=0.0
    )
    base, adapter, space = make_super_adapter(
        tmp_path,
        tiny_tokenizer,
        arch="gpt2",
        n_layers=2,
        adapter_cfg=adapter_cfg,
        space_cfg=SpaceConfig(groups=[], widths=[4, 2]),
    )
    config = mixed_config(space)
    out = tmp_path / "out"
    _export(adapter, out, json.dumps(config))
    lora_cfg = json.loads((out / "adapter_config.json").read_text())
    assert lora_cfg["fan_in_fan_out"] is True
    ours = our_logits(base, adapter, config, IDS)
    theirs, _ = stock_peft_logits(base, out, IDS)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


def test_mask_aware_unmerged_peft_gives_unmasked_delta(tmp_path, tiny_tokenizer):
    """Stock PEFT cannot apply the mask: unmerged, it equals the same adapter without the mask."""
    base, adapter, space = make_super_adapter(tmp_path, tiny_tokenizer, sparse_adapter=True)
    out = tmp_path / "out"
    results = _export(adapter, out, "heuristic")
    config = space.heuristic()
    theirs, _ = stock_peft_logits(base, out, IDS)
    unmasked = our_logits(base, adapter, config, IDS, mask=False)
    masked = our_logits(base, adapter, config, IDS)
    assert torch.allclose(theirs, unmasked, atol=1e-5, rtol=0)
    assert (theirs - masked).abs().max() > 1e-3
    ver = results.verification
    assert ver.stock_peft_vs_unmasked_max_abs_logit_diff < 1e-5
    assert ver.stock_peft_max_abs_logit_diff > 1e-3
    card = (out / "README.md").read_text()
    assert "Stock PEFT cannot apply that mask" in card and "--merge" in card


def test_pattern_keys_follow_peft_matching():
    names = [f"model.layers.{i}.mlp.up_proj" for i in range(30)]
    keys = pattern_keys(names)
    assert keys == {n: n for n in names}  # plain full names are safe here
    for n in names:
        assert get_pattern_key(list(keys.values()), n) == n
    # a nested copy of a name (or a name equal but for a dot) forces anchored, escaped keys
    nested = ["vision.model.layers.1.mlp.up_proj", "model.layers.1.mlpXup_proj"]
    keys = pattern_keys(names, nested)
    assert all(k.startswith("^") for k in keys.values())
    for n in names:
        assert get_pattern_key(list(keys.values()), n) == keys[n]
    for n in nested:
        assert get_pattern_key(list(keys.values()), n) == n  # i.e. no key matched


def test_anchored_keys_load_in_stock_peft(tmp_path, tiny_tokenizer):
    """When plain names could collide, the anchored keys still load exactly."""
    from export_helpers import sparse_tiny_model
    from peft import PeftModel

    from shears.adapters.elastic_lora import inject_elastic_lora
    from shears.adapters.search_space import SearchSpace
    from shears.export import export_peft_adapter

    model = sparse_tiny_model("llama", 2)
    space = SearchSpace.build(
        model, ElasticLoraConfig(alpha=8.0, dropout=0.0), SpaceConfig(widths=[4, 2])
    )
    layers = inject_elastic_lora(model, space.modules, 4, 8.0)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B.normal_(std=0.2)
    config = mixed_config(space)
    space.apply(layers, config)
    ours = model(input_ids=IDS).logits
    summary = export_peft_adapter(
        layers, space, config, tmp_path / "a", other_modules=["x.model.layers.0.mlp.up_proj"]
    )
    assert summary["anchored_pattern_keys"]
    fresh = sparse_tiny_model("llama", 2)
    theirs = PeftModel.from_pretrained(fresh, str(tmp_path / "a"))(input_ids=IDS).logits
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
