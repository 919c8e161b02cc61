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


@pytest.mark.parametrize(
    ("head", "match"),
    [
        (b"GGUF\x03\x00\x00\x00" + b"\x00" * 16, None),  # v3: fine (the check reads the header)
        (b"GGUF\x02\x00\x00\x00", None),
        (b"GGUF\xa5\x1b\x00\xf6junk", "its version is 4127202213"),
        (b"GGUF\x01\x00\x00\x00", "its version is 1"),
        (b"GGUF", "its version is None"),  # truncated after the magic
        (b"PK\x03\x04", "is not a GGUF file"),
    ],
)
def test_gguf_header_is_checked_before_loading(tmp_path, head, match):
    from shears.models import check_gguf_file

    f = tmp_path / "m.gguf"
    f.write_bytes(head)
    if match is None:
        check_gguf_file(f)
        return
    with pytest.raises(ShearsError, match=match) as exc:
        check_gguf_file(f)
    assert "\n" not in str(exc.value) and "m.gguf" in str(exc.value)
