"""A super-adapter records its base as given and as an absolute path, and loads in fp32 (or the
dtype it was saved in) whatever the base dtype."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_model
from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter, elastic_layers
from shears.adapters.io import WEIGHTS
from shears.config import absolute_spec, same_spec


def _save(folder, base_model, dtype=torch.float32):
    model = tiny_model("llama").to(dtype)
    cfg = ElasticLoraConfig(alpha=16.0, dropout=0.0)
    adapter = SuperAdapter.create(
        model, cfg, SpaceConfig(widths=[8, 4]), base_model=base_model, dtype=dtype
    )
    torch.manual_seed(3)
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.normal_()
    adapter.save(folder)
    return adapter.space


def test_base_recorded_as_given_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_model("llama").save_pretrained("base")
    _save(tmp_path / "adapter", "base")
    meta = json.loads((tmp_path / "adapter" / "shears_adapter.json").read_text())
    assert meta["base_model"] == "base"
    assert meta["base_model_path"] == str(tmp_path.resolve() / "base")
    peft_cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert peft_cfg["base_model_name_or_path"] == str(tmp_path.resolve() / "base")
    # from another folder, the recorded base still names the model
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert SuperAdapter.read(tmp_path / "adapter").base_spec == str(tmp_path.resolve() / "base")


def test_hub_id_and_named_default_stay_as_given(tmp_path):
    for spec in ("org/some-model", "smollm2-135m", None):
        _save(tmp_path / "a", spec)
        meta = json.loads((tmp_path / "a" / "shears_adapter.json").read_text())
        assert meta["base_model"] == spec and meta["base_model_path"] is None
        assert SuperAdapter.read(tmp_path / "a").base_spec == spec


def test_moved_base_falls_back_to_the_given_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_model("llama").save_pretrained("base")
    _save(tmp_path / "adapter", "base")
    (tmp_path / "base").rename(tmp_path / "gone")
    assert SuperAdapter.read(tmp_path / "adapter").base_spec == "base"


def test_same_spec_compares_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    assert same_spec("./x", str(tmp_path / "x")) and same_spec("x", "x/")
    assert not same_spec("x", "org/x")
    assert absolute_spec("gym:gsm_symbolic") == "gym:gsm_symbolic"
    assert absolute_spec("smollm2-135m") == "smollm2-135m"
    assert absolute_spec("out", local=True) == str(tmp_path.resolve() / "out")


@pytest.mark.parametrize("saved_dtype", [torch.float32, torch.bfloat16])
def test_bf16_base_loads_the_adapter_in_full_precision(tmp_path, saved_dtype):
    """A bf16 base must not round the adapter: it loads in fp32 (bf16 values are exact in fp32),
    and the layer's forward casts at the matmul."""
    _save(tmp_path / "ad", "tiny", dtype=saved_dtype)
    saved = load_file(str(tmp_path / "ad" / WEIGHTS))
    ids = torch.randint(0, 128, (2, 7))

    ref = tiny_model("llama")  # fp32 base, fp32 adapter
    layers = SuperAdapter.load(ref, tmp_path / "ad").layers
    want = ref(ids).logits

    base = tiny_model("llama").to(torch.bfloat16)
    layers = SuperAdapter.load(base, tmp_path / "ad").layers
    for name, layer in layers.items():
        assert layer.lora_A.dtype == torch.float32 and layer.lora_B.dtype == torch.float32
        assert layer.base_layer.weight.dtype == torch.bfloat16
        key = f"base_model.model.{name}.lora_B.weight"
        assert torch.equal(layer.lora_B, saved[key].float())  # not rounded to bf16
    got = base(ids).logits
    assert got.dtype == torch.bfloat16 and torch.isfinite(got.float()).all()
    assert (got.float() - want).abs().max() < 0.1 * want.abs().max()
    assert elastic_layers(base)


def test_wider_saved_dtype_is_kept(tmp_path):
    _save(tmp_path / "ad", "tiny")
    f = tmp_path / "ad" / WEIGHTS
    save_file({k: v.double() for k, v in load_file(str(f)).items()}, str(f))
    layers = SuperAdapter.load(tiny_model("llama").to(torch.bfloat16), tmp_path / "ad").layers
    assert all(layer.lora_A.dtype == torch.float64 for layer in layers.values())
