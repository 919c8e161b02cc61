import pytest

from conftest import ARCHS, tiny_model
from shears.errors import ShearsError
from shears.models import (
    find_decoder_blocks,
    find_targets,
    pattern_matches,
    validate_model_spec,
    weight_out_in,
)


@pytest.mark.parametrize("arch", ARCHS)
def test_find_targets_every_arch(arch):
    model = tiny_model(arch)
    prefix, blocks = find_decoder_blocks(model)
    assert len(blocks) == 2
    targets = find_targets(model)
    assert targets and all(n.startswith(prefix + ".") for n in targets)
    # embeddings and head are never targets
    assert not any("embed" in n or "lm_head" in n or n.endswith("wte") for n in targets)


def test_gpt2_conv1d_weight_orientation():
    model = tiny_model("gpt2")
    t = find_targets(model, ["mlp.c_fc"])
    (mod,) = list(t.values())[:1]
    w = weight_out_in(mod)
    assert w.shape == (mod.nf, mod.weight.shape[0])  # (out, in)


def test_target_and_ignore_patterns():
    model = tiny_model("llama")
    t = find_targets(
        model, ["q_proj", "re:.*mlp\\.(up|down)_proj"], ignore=["re:.*layers\\.1\\..*"]
    )
    assert sorted(n.split(".")[-1] for n in t) == ["down_proj", "q_proj", "up_proj"]
    assert pattern_matches("self_attn.q_proj", "model.layers.0.self_attn.q_proj")
    assert not pattern_matches("q_proj", "model.layers.0.self_attn.qq_proj")


def test_unknown_target_is_clear_error():
    with pytest.raises(ShearsError, match="'nope' matches no linear layer"):
        find_targets(tiny_model("llama"), ["nope"])


def test_missing_model_errors(tmp_path):
    with pytest.raises(ShearsError, match="not found"):
        validate_model_spec(str(tmp_path / "missing"))
    with pytest.raises(ShearsError, match="GGUF file"):
        validate_model_spec(str(tmp_path / "x.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShearsError, match="no config.json"):
        validate_model_spec(str(tmp_path / "empty"))
