"""A damaged super-adapter folder, a bad search space or a --groups pattern that matches nothing:
one ShearsError naming the file or pattern; an adapter run on another base: a WARNING."""

from __future__ import annotations

import logging

import pytest
from transformers import AutoModelForCausalLM

from conftest import tiny_model
from input_helpers import BINARY, LATIN1_JSON, base_with_adapter, write
from shears.adapters.config import ElasticLoraConfig, SpaceConfig
from shears.adapters.io import (
    META,
    PEFT_CONFIG,
    SPACE,
    WEIGHTS,
    SuperAdapter,
    warn_if_other_base,
)
from shears.adapters.search_space import SearchSpace
from shears.errors import ShearsError


@pytest.fixture
def adapter(tmp_path, tiny_tokenizer):
    return base_with_adapter(tmp_path, tiny_tokenizer)


@pytest.mark.parametrize("name", [META, PEFT_CONFIG, SPACE])
@pytest.mark.parametrize("content", [b"{garbage", LATIN1_JSON, b"[1, 2]"])
def test_damaged_json_in_adapter_folder(adapter, name, content):
    _, folder = adapter
    write(folder / name, content)
    with pytest.raises(ShearsError, match=rf"{name}'"):
        SuperAdapter.read(folder)


def test_metadata_without_space_config(adapter):
    _, folder = adapter
    write(folder / META, {"r_max": 8})
    with pytest.raises(ShearsError, match=r"has no 'space_config' object"):
        SuperAdapter.read(folder)
    write(folder / META, {"space_config": {"widths": "x"}})
    with pytest.raises(ShearsError, match=r"shears_adapter.json'.*space_config.widths"):
        SuperAdapter.read(folder)


def test_malformed_search_space(adapter, tmp_path):
    _, folder = adapter
    write(folder / SPACE, {"groups": [{"name": "0.q"}]})
    with pytest.raises(ShearsError, match=r"search_space.json' is not a search space"):
        SuperAdapter.read(folder)
    other = write(tmp_path / "space.json", {"groups": []})
    with pytest.raises(ShearsError, match=r"--space file .*space.json' is not a search space"):
        SearchSpace.load(other, "--space file")


def test_damaged_weights(adapter):
    base, folder = adapter
    write(folder / WEIGHTS, BINARY)
    model = AutoModelForCausalLM.from_pretrained(base)
    with pytest.raises(
        ShearsError, match=r"adapter weights .*adapter_model.safetensors' are unreadable"
    ):
        SuperAdapter.load(model, folder)


def test_groups_pattern_that_matches_nothing_fails():
    """A typo inside a group used to be dropped (the group matched through its other patterns)."""
    model = tiny_model("llama")
    cfg = SpaceConfig(groups=[["q_proj", "k_projj", "v_proj"], ["up_proj"]], widths=[8, 4])
    with pytest.raises(
        ShearsError,
        match=r"groups pattern 'k_projj' of group .*matches no target module.*self_attn.k_proj",
    ):
        SearchSpace.build(model, ElasticLoraConfig(), cfg)


def test_bad_regex_in_space_config():
    with pytest.raises(ShearsError, match=r"targets 're:\[' is not a valid regular expression"):
        ElasticLoraConfig(targets=["re:["])
    with pytest.raises(
        ShearsError, match=r"groups 're:q_proj\)' is not a valid regular expression"
    ):
        SpaceConfig(groups=[["re:q_proj)"]])


def test_warns_on_another_base(adapter, tmp_path):
    base, folder = adapter
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(f"{record.levelname} {record.getMessage()}")

    log = logging.getLogger("shears.adapters.io")
    handler = Keep()
    log.addHandler(handler)
    try:
        assert not warn_if_other_base(folder, None, "searched")
        assert not warn_if_other_base(folder, str(base), "searched")
        assert not warn_if_other_base(folder, str(base) + "/", "searched")  # same folder
        assert warn_if_other_base(folder, str(tmp_path / "other"), "searched")
    finally:
        log.removeHandler(handler)
    assert len(got) == 1 and got[0].startswith("WARNING the adapter")
    assert "was trained on" in got[0] and "but is searched on" in got[0] and "other" in got[0]
