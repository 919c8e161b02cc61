"""``max_positions``: one reading of a model's context length for every architecture, from a loaded
model, its config or a saved folder (config.json only, no weights); ``check_length``'s message."""

from __future__ import annotations

import json

import pytest

from conftest import ARCHS, tiny_config, tiny_model
from shears.context import check_length
from shears.errors import ShearsError
from shears.models import ContextLimit, max_positions


@pytest.mark.parametrize("arch", ARCHS)
def test_max_positions_of_every_architecture(arch):
    model = tiny_model(arch, max_positions=77)
    key = "n_positions" if arch == "gpt2" else "max_position_embeddings"
    assert max_positions(model) == ContextLimit(77, key)
    assert max_positions(model.config) == ContextLimit(77, key)


def test_max_positions_through_a_peft_wrapper():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("llama", max_positions=48), LoraConfig(r=2))
    assert max_positions(model) == ContextLimit(48, "max_position_embeddings")


def test_max_positions_reads_a_folder_without_weights(tmp_path):
    cfg = tiny_config("gpt2")
    cfg.n_positions = 64
    cfg.save_pretrained(tmp_path)  # config.json only: no weights to load
    assert not list(tmp_path.glob("*.safetensors"))
    assert max_positions(str(tmp_path)) == ContextLimit(64, "n_positions")


def test_max_positions_of_older_or_unusual_keys(tmp_path):
    from transformers import PretrainedConfig

    assert max_positions(PretrainedConfig(n_ctx=300)) == ContextLimit(300, "n_ctx")
    assert max_positions(PretrainedConfig(seq_length=4096)) == ContextLimit(4096, "seq_length")
    assert max_positions(PretrainedConfig()) is None  # no limit in the config: none known


def test_max_positions_unknown_without_loading(tmp_path):
    assert max_positions(str(tmp_path / "missing")) is None
    assert max_positions("no-such-org/no-such-model") is None  # never goes to the network
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "nope"}))
    assert max_positions(str(tmp_path / "bad")) is None  # the load reports the real error


def test_check_length_message():
    limit = ContextLimit(64, "n_positions")
    check_length(64, "--seqlen", limit)
    check_length(10**6, "--seqlen", None)
    msg = "--seqlen 100 exceeds the model's 64 positions (n_positions); use --seqlen <= 64"
    with pytest.raises(ShearsError) as exc:
        check_length(100, "--seqlen", limit)
    assert str(exc.value) == msg
    with pytest.raises(ShearsError, match=r"no position for a prompt; use --max-new-tokens <= 63"):
        check_length(64, "--max-new-tokens", limit, reserve=1)
