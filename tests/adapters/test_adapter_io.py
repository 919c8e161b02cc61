"""Super-adapter folder in PEFT layout: our loader and stock PEFT both reproduce r_max."""

import json

import pytest
import torch

from conftest import tiny_model
from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter, elastic_layers
from shears.errors import ShearsError


@pytest.fixture
def saved(tmp_path):
    model = tiny_model("llama")
    config = ElasticLoraConfig(alpha=16.0, dropout=0.0)
    adapter = SuperAdapter.create(model, config, SpaceConfig(widths=[8, 6, 4]), base_model="tiny")
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.normal_()
    adapter.save(tmp_path / "ad")
    return model, adapter.space, tmp_path / "ad"


def test_roundtrip_and_stock_peft(saved):
    from peft import PeftModel

    model, space, folder = saved
    ids = torch.randint(0, 128, (2, 10))
    space.apply(elastic_layers(model), space.maximal())
    want_max = model(ids).logits
    space.apply(elastic_layers(model), space.minimal())
    want_min = model(ids).logits

    fresh = tiny_model("llama")
    loaded = SuperAdapter.load(fresh, folder)
    layers, space2 = loaded.layers, loaded.space
    assert space2.to_dict() == space.to_dict()
    space2.apply(layers, space2.minimal())
    assert torch.allclose(fresh(ids).logits, want_min, atol=1e-6)

    peft_model = PeftModel.from_pretrained(tiny_model("llama"), str(folder))
    peft_model.eval()
    assert torch.allclose(peft_model(input_ids=ids).logits, want_max, atol=1e-5)

    saved = SuperAdapter.read(folder)
    assert saved.space_config.widths == [8, 6, 4] and saved.config.r_max == 8
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 8


def test_adapter_that_does_not_fit(saved, tmp_path):
    _, _, folder = saved
    with pytest.raises(ShearsError, match="does not fit"):
        SuperAdapter.load(tiny_model("opt"), folder)
    with pytest.raises(ShearsError, match="not a Shears super-adapter folder"):
        SuperAdapter.read(tmp_path)
