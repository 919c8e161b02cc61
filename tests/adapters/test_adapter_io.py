"""Super-adapter folder in PEFT layout: our loader and stock PEFT both reproduce r_max."""

import json

import pytest
import torch

from conftest import tiny_model
from shears.adapters import SearchSpace, SpaceConfig, elastic_layers
from shears.adapters.elastic_lora import inject_elastic_lora
from shears.adapters.io import load_super_adapter, read_super_adapter_meta, save_super_adapter
from shears.errors import ShearsError


@pytest.fixture
def saved(tmp_path):
    model = tiny_model("llama")
    cfg = SpaceConfig(widths=[8, 6, 4], alpha=16.0, dropout=0.0)
    space = SearchSpace.build(model, cfg)
    layers = inject_elastic_lora(model, space.modules, 8, 16.0)
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_B.normal_()
    save_super_adapter(model, space, cfg, tmp_path / "ad", base_model="tiny")
    return model, space, tmp_path / "ad"


def test_roundtrip_and_stock_peft(saved):
    from peft import PeftModel

    model, space, folder = saved
    ids = torch.randint(0, 128, (2, 10))
    space.apply(elastic_layers(model), space.maximal())
    want_max = model(ids).logits
    space.apply(elastic_layers(model), space.minimal())
    want_min = model(ids).logits

    fresh = tiny_model("llama")
    layers, space2 = load_super_adapter(fresh, folder)
    assert space2.to_dict() == space.to_dict()
    space2.apply(layers, space2.minimal())
    assert torch.allclose(fresh(ids).logits, want_min, atol=1e-6)

    peft_model = PeftModel.from_pretrained(tiny_model("llama"), str(folder))
    peft_model.eval()
    assert torch.allclose(peft_model(input_ids=ids).logits, want_max, atol=1e-5)

    cfg, _ = read_super_adapter_meta(folder)
    assert cfg.widths == [8, 6, 4] and cfg.r_max == 8
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 8


def test_adapter_that_does_not_fit(saved, tmp_path):
    _, _, folder = saved
    with pytest.raises(ShearsError, match="does not fit"):
        load_super_adapter(tiny_model("opt"), folder)
    with pytest.raises(ShearsError, match="not a Shears super-adapter folder"):
        read_super_adapter_meta(tmp_path)
