"""``shears eval`` on a garbage .gguf, non-UTF-8 or binary task files, a damaged adapter folder
and a non-UTF-8 --sub-adapter file: one line, exit 2, before the model loads."""

from __future__ import annotations

import pytest

import shears.models
from input_helpers import BINARY, LATIN1_JSON, base_with_adapter, one_error, write
from shears.adapters.io import META
from shears.errors import ShearsError


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    base, adapter = base_with_adapter(tmp_path / "setup", tiny_tokenizer)
    return tmp_path, base, adapter


@pytest.fixture
def no_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(shears.models, "load_model", boom)


def _eval(tmp, model, *extra):
    return ("eval", "--model", model, "--output-dir", tmp / "out", "--no-progress", *extra)


def test_garbage_gguf(capsys, setup, no_load):
    tmp, base, _ = setup
    gguf = write(tmp / "m.gguf", BINARY)
    argv = _eval(tmp, gguf, "--tasks", f"math:{tmp / 'setup' / 'data.json'}")
    one_error(capsys, *argv, match=f"'{gguf}' is not a GGUF file")


@pytest.mark.parametrize("kind", ["math", "mc"])
def test_non_utf8_task_file(capsys, setup, no_load, kind):
    tmp, base, _ = setup
    task = write(tmp / "t.json", LATIN1_JSON)
    one_error(capsys, *_eval(tmp, base, "--tasks", f"{kind}:{task}"), match="is not UTF-8 text")


def test_binary_perplexity_text(capsys, setup, no_load):
    tmp, base, _ = setup
    text = write(tmp / "held.txt", BINARY)
    one_error(capsys, *_eval(tmp, base, "--tasks", f"ppl:{text}"), match="is not UTF-8 text")
    assert not (tmp / "out").exists()


def test_non_utf8_sub_adapter_file(capsys, setup, no_load):
    tmp, base, adapter = setup
    sub = write(tmp / "sub.json", LATIN1_JSON)
    task = f"math:{tmp / 'setup' / 'data.json'}"
    argv = _eval(tmp, base, "--adapter", adapter, "--sub-adapter", sub, "--tasks", task)
    one_error(capsys, *argv, match=f"sub-adapter config '{sub}' is not UTF-8 text")


def test_damaged_super_adapter(capsys, setup, no_load):
    tmp, base, adapter = setup
    write(adapter / META, b"{garbage")
    task = f"math:{tmp / 'setup' / 'data.json'}"
    argv = _eval(tmp, base, "--adapter", adapter, "--tasks", task)
    one_error(capsys, *argv, match="adapter metadata")


def test_damaged_peft_adapter_config(capsys, setup, no_load):
    """A stock PEFT folder (no shears_adapter.json) whose adapter_config.json is broken."""
    tmp, base, adapter = setup
    peft = tmp / "peft"
    peft.mkdir()
    write(peft / "adapter_config.json", b'{"r": 8,')
    task = f"math:{tmp / 'setup' / 'data.json'}"
    argv = _eval(tmp, base, "--adapter", peft, "--tasks", task)
    one_error(capsys, *argv, match="PEFT adapter config")


def test_warns_on_another_base(capsys, setup, tmp_path, tiny_tokenizer):
    """A super-adapter evaluated on another model than its base (e.g. the default dense model
    instead of the pruned one) runs, but says so at WARNING."""
    from input_helpers import shears

    tmp, base, adapter = setup
    other, _ = base_with_adapter(tmp_path / "other", tiny_tokenizer, seed=1)
    task = tmp / "setup" / "data.json"
    for model, out, warns in ((other, "o1", True), (base, "o2", False)):
        argv = ("eval", "--model", model, "--adapter", adapter, "--output-dir", tmp / out)
        rc, lines = shears(
            capsys, *argv, "--no-progress", "--tasks", f"math:{task}", "--limit", "1"
        )
        warned = [ln for ln in lines if " WARNING " in ln and "is evaluated on" in ln]
        assert rc == 0 and len(warned) == int(warns)


@pytest.mark.parametrize("stage", ["eval", "generate"])
@pytest.mark.parametrize(
    "bad, match",
    [
        ({"prompt_style": "vicuna"}, "--prompt-style 'vicuna' is not known; allowed: alpaca"),
        ({"precision": "half"}, "--precision 'half' is not known; allowed: auto, fp32, bf16"),
    ],
)
def test_model_source_fields_are_checked_once_for_eval_and_generate(stage, bad, match):
    """EvalConfig and GenerateConfig share ModelSourceConfig: the same field, the same check."""
    from shears.evaluate.config import EvalConfig, ModelSourceConfig
    from shears.generate.config import GenerateConfig

    cls, needed = {"eval": (EvalConfig, {}), "generate": (GenerateConfig, {"prompts": ["hi"]})}[
        stage
    ]
    assert issubclass(cls, ModelSourceConfig)
    with pytest.raises(ShearsError, match=match):
        cls(**needed, **bad)
