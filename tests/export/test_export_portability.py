"""`shears export` from another current folder than the one the adapter was trained in, and a
bf16 export that keeps the adapter in full precision."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from export_helpers import make_super_adapter
from safetensors.torch import load_file

from shears.export import ExportConfig, run_export


def test_export_from_another_folder_uses_the_recorded_base(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_super_adapter(Path("."), tiny_tokenizer)  # records its base as "base" (cwd-relative)
    assert json.loads(Path("adapter/shears_adapter.json").read_text())["base_model"] == "base"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = run_export(ExportConfig(adapter=str(tmp_path / "adapter"), output_dir="out"))
    assert res.base_model.path == str(tmp_path.resolve() / "base")
    peft_cfg = json.loads((tmp_path / "elsewhere" / "out" / "adapter_config.json").read_text())
    assert peft_cfg["base_model_name_or_path"] == str(tmp_path.resolve() / "base")


def test_bf16_export_keeps_the_adapter_unrounded(tmp_path, tiny_tokenizer):
    _, adapter, space = make_super_adapter(tmp_path, tiny_tokenizer)
    cfg = ExportConfig(
        adapter=str(adapter),
        output_dir=str(tmp_path / "out"),
        sub_adapter="max",
        dtype="bf16",
        merge=True,
    )
    res = run_export(cfg)
    assert res.base_model.dtype == "bfloat16"
    exported = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    for key, t in exported.items():  # the max sub-adapter: the super-adapter itself
        assert t.dtype == torch.float32 and torch.equal(t, saved[key]), key
