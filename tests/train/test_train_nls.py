"""NLS training on tiny models: outputs, frozen base, per-step sampling, NaN stop, bad input."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from nls_worker import (  # noqa: E402
    ActiveRanks,
    PoisonAt,
    make_config,
    make_examples,
    make_model,
    make_tokenizer,
)

from shears.adapters import ElasticLoraConfig, SearchSpace, SpaceConfig, elastic_layers  # noqa: E402
from shears.errors import ShearsError  # noqa: E402
from shears.train import train_nls  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_train_outputs_frozen_base_and_sampling(tok, tmp_path):
    from peft import PeftModel

    model = make_model(tok)
    base_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rec = ActiveRanks()
    cfg = make_config(str(tmp_path / "out"), max_steps=4, save_steps=2)
    res = train_nls(model, tok, make_examples(), cfg, callbacks=[rec], base_model="tiny")

    # base weights bit-identical, and exactly as sparse as before
    layers = elastic_layers(model)
    for name, before in base_before.items():
        mod, _, leaf = name.rpartition(".")
        if mod in layers:
            name = f"{mod}.base_layer.{leaf}"
        assert torch.equal(model.get_parameter(name), before), name
    assert any(torch.count_nonzero(layer.lora_B) for layer in layers.values())  # it trained

    # one sampled sub-adapter per optimizer step, from space.sample(seed, step)
    space = SearchSpace.build(make_model(tok), cfg.adapter, cfg.space)
    assert [s for s, _ in rec.history] == [0, 1, 2, 3]
    for step, ranks in rec.history:
        assert ranks == space.module_ranks(space.sample(cfg.seed, step))
    assert all(layer.active_rank == 8 for layer in layers.values())  # max afterwards

    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "search_space.json",
        "shears_adapter.json",
        "train_config.json",
        "train_results.json",
        "trainer_state.json",
        "loss.png",
    } <= names
    assert not any(n.startswith("checkpoint-") for n in names)
    assert json.loads((out / "train_config.json").read_text())["prompt_style"] == "alpaca"
    saved = json.loads((out / "train_results.json").read_text())
    assert saved["global_steps"] == 4 and saved == json.loads(json.dumps(res.to_dict()))
    assert saved["adapter_parameters"]["max"] == saved["trainable_parameters"]
    assert saved["final_loss"] is not None and saved["examples"] == 24

    # stock PEFT loads the folder as the maximal sub-adapter
    ids = torch.randint(0, len(tok), (2, 9))
    model.eval()
    peft_model = PeftModel.from_pretrained(make_model(tok), str(out)).eval()
    assert torch.allclose(peft_model(input_ids=ids).logits, model(ids).logits, atol=1e-5)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tok, tmp_path):
    out = tmp_path / "nan"
    cfg = make_config(str(out), max_steps=6, save_steps=2)
    with pytest.raises(ShearsError, match=r"loss is nan at optimizer step 4.*checkpoint-2"):
        train_nls(make_model(tok), tok, make_examples(), cfg, callbacks=[PoisonAt(3)])
    ckpts = sorted(p.name for p in out.glob("checkpoint-*"))
    assert ckpts == ["checkpoint-2"]
    assert not (out / "adapter_model.safetensors").exists()
    from safetensors.torch import load_file

    state = load_file(str(out / "checkpoint-2" / "elastic_adapter.safetensors"))
    assert all(torch.isfinite(t).all() for t in state.values())


def test_existing_output_and_finished_resume(tok, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "x").write_text("x")
    # a folder that shears did not write is never replaced, not even with --overwrite
    for overwrite in (False, True):
        with pytest.raises(ShearsError, match="not written by shears"):
            train_nls(
                make_model(tok), tok, make_examples(), make_config(str(out), overwrite=overwrite)
            )
    assert (out / "x").read_text() == "x"
    (out / "x").unlink()
    cfg = make_config(str(out), max_steps=1, warmup=0)
    train_nls(make_model(tok), tok, make_examples(4), cfg)
    with pytest.raises(ShearsError, match="already exists .*; pass --overwrite"):
        train_nls(make_model(tok), tok, make_examples(4), cfg)
    cfg = make_config(str(out), max_steps=1, warmup=0, overwrite=True)
    first = train_nls(make_model(tok), tok, make_examples(4), cfg)
    assert not list(tmp_path.glob(".o.*")), "the replacement left its work folder behind"
    # --resume on a finished run does no training and loads its adapter
    model = make_model(tok)
    again = train_nls(
        model, tok, make_examples(4), make_config(str(out), max_steps=1, warmup=0, resume=True)
    )
    assert again == first
    assert any(torch.count_nonzero(layer.lora_B) for layer in elastic_layers(model).values())
    with pytest.raises(ShearsError, match="--resume with a different setting: lr"):
        train_nls(
            make_model(tok),
            tok,
            make_examples(4),
            make_config(str(out), max_steps=1, warmup=0, lr=1.0, resume=True),
        )


def test_other_arch_and_gradient_checkpointing(tok, tmp_path):
    model = make_model(tok, arch="gpt2")
    adapter = ElasticLoraConfig(targets=["c_attn", "c_fc"], alpha=8.0)
    space = SpaceConfig(groups=[], widths=[4, 2])
    cfg = make_config(
        str(tmp_path / "g"), max_steps=2, adapter=adapter, space=space, gradient_checkpointing=True
    )
    res = train_nls(model, tok, make_examples(8), cfg)
    assert res.global_steps == 2 and res.groups == 4


@pytest.mark.parametrize(
    ("examples", "overrides", "message"),
    [
        ([], {}, "training data is empty"),
        ([{"instruction": "x", "input": ""}], {}, "example 0 has no 'output'"),
        ([{"output": "y"}], {}, "example 0 has no 'instruction'"),
        (None, {"cutoff_len": 8}, "cutoff_len 8 is too short for any example"),
        (None, {"space": SpaceConfig(groups=[["q_proj"], ["gate_proj"]])}, "matches no target"),
        (None, {"adapter": ElasticLoraConfig(targets=["nope"])}, "'nope' matches no linear layer"),
        (None, {"prompt_style": "chat"}, "chat template"),
    ],
)
def test_bad_input_fails_before_training(tok, tmp_path, examples, overrides, message):
    out = tmp_path / "bad"
    cfg = make_config(str(out), **overrides)
    data = make_examples(4) if examples is None else examples
    with pytest.raises(ShearsError, match=message):
        train_nls(make_model(tok), tok, data, cfg)
    assert not list(out.glob("checkpoint-*"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prompt_style": "fancy"}, "prompt_style 'fancy'"),
        ({"cutoff_len": 1}, "cutoff_len"),
        ({"lr": 0}, "lr must be > 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"epochs": 0, "max_steps": 0}, "epochs must be > 0"),
        ({"precision": "fp8"}, "precision 'fp8'"),
        ({"data_fields": {"question": "q"}}, "data_fields key 'question'"),
        ({"overwrite": True, "resume": True}, "exclude each other"),
        ({"space": {"widths": [16, 32]}}, "sorted high to low"),
    ],
)
def test_bad_train_config(overrides, message):
    with pytest.raises(ShearsError, match=message):
        make_config("x", **overrides)


def test_nls_max_prob_trains_maximal_steps_and_is_checked(tok, tmp_path):
    """--nls-max-prob 1 trains the maximal sub-adapter on every step (plain LoRA at r_max);
    a value outside [0, 1] is one clear error."""
    rec = ActiveRanks()
    cfg = make_config(str(tmp_path / "out"), max_steps=3, nls_max_prob=1.0)
    train_nls(make_model(tok), tok, make_examples(), cfg, callbacks=[rec], base_model="tiny")
    assert [s for s, _ in rec.history] == [0, 1, 2]
    assert all(set(ranks.values()) == {8} for _, ranks in rec.history)
    for bad in (-0.1, 1.5):
        with pytest.raises(ShearsError, match=rf"--nls-max-prob must be in \[0, 1\], got {bad}"):
            make_config(str(tmp_path / "bad"), nls_max_prob=bad)
