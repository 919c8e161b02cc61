"""Bad input gets one clear ShearsError before any work; the CLI turns it into exit code 2."""

from __future__ import annotations

import json

import pytest
from export_helpers import make_super_adapter, sparse_tiny_model

import shears.export.run as export_run
from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.search_space import SearchSpace
from shears.adapters.select import resolve_sub_adapter
from shears.cli import main
from shears.errors import ShearsError
from shears.export import ExportConfig, run_export


@pytest.fixture
def adapter_setup(tmp_path, tiny_tokenizer):
    base, adapter, space = make_super_adapter(tmp_path, tiny_tokenizer)
    return tmp_path, base, adapter, space


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model gets loaded: the error must come before any work."""

    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(export_run, "load_model", boom)


def _cfg(adapter, out, **kw):
    return ExportConfig(adapter=str(adapter), output_dir=str(out), **kw)


def test_existing_output_needs_overwrite(adapter_setup, no_model_load):
    tmp, _, adapter, _ = adapter_setup
    out = tmp / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    for overwrite in (False, True):  # not written by shears: never replaced
        with pytest.raises(ShearsError, match="not written by shears"):
            run_export(_cfg(adapter, out, overwrite=overwrite))
    assert (out / "old.txt").is_file()


def test_config_outside_space(adapter_setup, no_model_load):
    tmp, _, adapter, space = adapter_setup
    bad = space.heuristic() | {space.groups[0].name: 5}
    with pytest.raises(ShearsError, match=r"rank 5; allowed: \[8, 6, 4\]"):
        run_export(_cfg(adapter, tmp / "out", sub_adapter=json.dumps(bad)))
    with pytest.raises(ShearsError, match="unknown group 'nope'"):
        run_export(_cfg(adapter, tmp / "out", sub_adapter=json.dumps({"nope": 8})))
    with pytest.raises(ShearsError, match="misses group"):
        run_export(_cfg(adapter, tmp / "out", sub_adapter=json.dumps({space.groups[0].name: 8})))
    with pytest.raises(ShearsError, match="neither heuristic, max, min"):
        run_export(_cfg(adapter, tmp / "out", sub_adapter="best"))
    (tmp / "sr.json").write_text(json.dumps({"best": {"score": 1}}))
    with pytest.raises(ShearsError, match="no best.config"):
        run_export(_cfg(adapter, tmp / "out", sub_adapter=str(tmp / "sr.json")))
    assert not (tmp / "out").exists()


def test_adapter_and_model_do_not_match(adapter_setup, tiny_tokenizer):
    tmp, _, adapter, _ = adapter_setup
    other = sparse_tiny_model("llama", 2, hidden_size=48, intermediate_size=96)
    other.save_pretrained(tmp / "other")
    tiny_tokenizer.save_pretrained(tmp / "other")
    with pytest.raises(ShearsError, match="adapter does not fit the model"):
        run_export(_cfg(adapter, tmp / "out", model=str(tmp / "other")))
    gpt2 = sparse_tiny_model("gpt2", 2)
    gpt2.save_pretrained(tmp / "gpt2")
    tiny_tokenizer.save_pretrained(tmp / "gpt2")
    with pytest.raises(ShearsError, match="adapter does not fit the model: module"):
        run_export(_cfg(adapter, tmp / "out", model=str(tmp / "gpt2")))
    assert not (tmp / "out").exists()


def test_not_an_adapter_and_bad_flags(tmp_path, adapter_setup, no_model_load):
    _, _, adapter, _ = adapter_setup
    with pytest.raises(ShearsError, match="is not a Shears super-adapter folder"):
        run_export(_cfg(tmp_path / "missing", tmp_path / "out"))
    with pytest.raises(ShearsError, match="only apply with --merge"):
        _cfg(adapter, tmp_path / "out", keep_sparsity=True)
    with pytest.raises(ShearsError, match="pass --adapter"):
        ExportConfig(output_dir="x")
    with pytest.raises(ShearsError, match="do not exist"):
        run_export(_cfg(adapter, tmp_path / "out", eval_results=str(tmp_path / "nope.json")))


def test_mismatched_weights_file(adapter_setup, no_model_load):
    """search_space.json and the weights of another adapter: caught from the file's keys."""
    tmp, _, adapter, _ = adapter_setup
    from safetensors.torch import load_file, save_file

    state = load_file(adapter / "adapter_model.safetensors")
    state = {k: v for k, v in state.items() if ".layers.1." not in k}
    save_file(state, adapter / "adapter_model.safetensors")
    with pytest.raises(ShearsError, match="do not belong together"):
        run_export(_cfg(adapter, tmp / "out"))


def test_mask_aware_no_keep_sparsity(tmp_path, tiny_tokenizer, no_model_load):
    _, adapter, _ = make_super_adapter(tmp_path, tiny_tokenizer, sparse_adapter=True)
    with pytest.raises(ShearsError, match="mask-aware"):
        run_export(_cfg(adapter, tmp_path / "out", merge=True, keep_sparsity=False))


def test_module_keyed_widths_file():
    model = sparse_tiny_model("llama", 2)
    space = SearchSpace.build(model, ElasticLoraConfig(), SpaceConfig(widths=[8, 4]))
    by_module = space.module_ranks(space.minimal())
    assert resolve_sub_adapter(json.dumps(by_module), space).config == space.minimal()
    by_module["model.layers.0.self_attn.q_proj"] = 8  # q, k, v share one group
    with pytest.raises(ShearsError, match="get different ranks"):
        resolve_sub_adapter(json.dumps(by_module), space)


def test_cli(adapter_setup, capsys):
    tmp, _, adapter, _ = adapter_setup
    out = tmp / "out"
    argv = ["export", "--adapter", str(adapter), "--output-dir", str(out), "--sub-adapter", "min"]
    assert main(argv) == 0
    assert (out / "adapter_config.json").is_file()
    assert json.loads((out / "export_results.json").read_text())["sub_adapter"]["source"] == "min"
    assert main(argv) == 2  # exists, no --overwrite: one-line error, exit 2
    assert main(argv + ["--overwrite", "--merge", "--keep-sparsity"]) == 0
    assert (out / "merged" / "config.json").is_file()
