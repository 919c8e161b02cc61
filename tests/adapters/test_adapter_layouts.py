"""``shears_adapter.json`` holds the two configs once, as they are; a folder written by the
previous version (one ``space_config`` with every key, r_max / alpha / dropout / sparse_adapter
again at the top) reads, loads and exports the same."""

import json

import pytest
import torch

from conftest import tiny_model
from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
from shears.adapters.io import META
from shears.errors import ShearsError

# ``shears_adapter.json`` as the previous version wrote it (its save_super_adapter, verbatim)
LEGACY_META = {
    "r_max": 8,
    "alpha": 16.0,
    "dropout": 0.05,
    "sparse_adapter": True,
    "space_config": {
        "targets": ["q_proj", "v_proj", "up_proj"],
        "groups": [["q_proj", "v_proj"]],
        "widths": [8, 6, 4],
        "alpha": 16.0,
        "dropout": 0.05,
        "sparse_adapter": True,
        "r_max": 8,
    },
    "base_model": "base",
    "base_model_path": None,
}
ADAPTER = ElasticLoraConfig(
    targets=["q_proj", "v_proj", "up_proj"], r_max=8, alpha=16.0, dropout=0.05, sparse_adapter=True
)
SPACE = SpaceConfig(groups=[["q_proj", "v_proj"]], widths=[8, 6, 4])


@pytest.fixture
def folder(tmp_path):
    model = tiny_model("llama")
    adapter = SuperAdapter.create(model, ADAPTER, SPACE, base_model="base")
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.normal_()
    adapter.save(tmp_path / "new")
    return tmp_path / "new"


def test_configs_are_saved_once_as_they_are(folder):
    meta = json.loads((folder / META).read_text())
    assert meta == {
        "adapter": {
            "targets": ["q_proj", "v_proj", "up_proj"],
            "r_max": 8,
            "alpha": 16.0,
            "dropout": 0.05,
            "sparse_adapter": True,
        },
        "space": {"groups": [["q_proj", "v_proj"]], "widths": [8, 6, 4]},
        "base_model": "base",
        "base_model_path": None,
    }
    assert "r_max" not in json.loads((folder / "search_space.json").read_text())
    saved = SuperAdapter.read(folder)
    assert saved.config == ADAPTER and saved.space_config == SPACE
    assert saved.base_spec == "base" and saved.layers == {}


def test_previous_layout_reads_loads_and_exports_the_same(folder, tmp_path):
    from shears.export.peft_export import export_peft_adapter

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for f in folder.iterdir():
        (legacy / f.name).write_bytes(f.read_bytes())
    (legacy / META).write_text(json.dumps(LEGACY_META, indent=2) + "\n")

    old, new = SuperAdapter.read(legacy), SuperAdapter.read(folder)
    assert (old.config, old.space_config) == (new.config, new.space_config)
    assert old.space.to_dict() == new.space.to_dict()

    ids = torch.randint(0, 128, (2, 9))
    outs = {}
    for name, d in (("old", legacy), ("new", folder)):
        model = tiny_model("llama").eval()
        loaded = SuperAdapter.load(model, d, dropout=0.0)
        config = loaded.space.heuristic()
        loaded.space.apply(loaded.layers, config)
        assert all(layer.sparse_adapter for layer in loaded.layers.values())
        logits = model(ids).logits
        out = tmp_path / f"export_{name}"
        export_peft_adapter(loaded.layers, loaded.space, config, out, dropout=0.05)
        files = {
            f: (out / f).read_bytes() for f in ("adapter_config.json", "adapter_model.safetensors")
        }
        outs[name] = (logits, files)
    assert torch.equal(outs["old"][0], outs["new"][0])
    assert outs["old"][1] == outs["new"][1]  # the stock-PEFT export is byte-identical


def test_damaged_metadata_of_either_layout(folder):
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({**meta, "space": None}))
    with pytest.raises(ShearsError, match=r"shears_adapter.json' has no 'space' object"):
        SuperAdapter.read(folder)
    (folder / META).write_text(json.dumps({**meta, "adapter": {**meta["adapter"], "r_max": 4}}))
    with pytest.raises(ShearsError, match=r"adapter.*widths \[8, 6, 4\] hold 8 > r_max 4"):
        SuperAdapter.read(folder)
    legacy = {**LEGACY_META, "space_config": {**LEGACY_META["space_config"], "alpha": -1}}
    (folder / META).write_text(json.dumps(legacy))
    with pytest.raises(ShearsError, match=r"shears_adapter.json'.*alpha must be > 0"):
        SuperAdapter.read(folder)
