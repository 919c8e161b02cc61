"""``shears search`` against the model's positions: the loss objective's cutoff_len (given or the
training run's) and the math objective's --max-new-tokens fail before the data is read (a LLaMA
of 64 positions used to run on past its context without a word)."""

from __future__ import annotations

import json

import pytest

import shears.models as models
import shears.search.data as search_data
from conftest import tiny_model
from context_helpers import cli, error_lines
from shears.adapters import ElasticLoraConfig, SpaceConfig, SuperAdapter
from shears.models import save_model


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    model = tiny_model("llama", tokenizer=tiny_tokenizer, max_positions=64)
    save_model(model, tiny_tokenizer, tmp_path / "model")
    cfg = ElasticLoraConfig(targets=["q_proj", "v_proj"])
    space = SpaceConfig(groups=[], widths=[4, 2])
    adapter = SuperAdapter.create(model, cfg, space, base_model=str(tmp_path / "model"))
    adapter.save(tmp_path / "adapter")
    rows = [
        {"instruction": f"{i} + {i}?", "output": f"{2 * i}", "answer": str(2 * i)} for i in range(8)
    ]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    train_cfg = {"model": str(tmp_path / "model"), "data": str(tmp_path / "data.json")}
    train_cfg.update(train_size=4, prompt_style="alpaca", cutoff_len=200)
    (tmp_path / "adapter" / "train_config.json").write_text(json.dumps(train_cfg))
    return tmp_path


@pytest.fixture
def no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("data or model loaded before the context check")

    monkeypatch.setattr(models, "load_model", boom)
    monkeypatch.setattr(search_data, "load_validation_examples", boom)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            [],
            "--cutoff-len 200 (the training run's cutoff_len) exceeds the model's 64 positions "
            "(max_position_embeddings); use --cutoff-len <= 64",
        ),
        (
            ["--cutoff-len", "100"],
            "--cutoff-len 100 exceeds the model's 64 positions (max_position_embeddings); "
            "use --cutoff-len <= 64",
        ),
        (
            ["--objective", "math", "--max-new-tokens", "64"],
            "--max-new-tokens 64 exceeds the model's 64 positions (max_position_embeddings) and "
            "leaves no position for a prompt; use --max-new-tokens <= 63",
        ),
    ],
    ids=["inherited-cutoff-len", "cutoff-len", "math-max-new-tokens"],
)
def test_cli_lengths_above_positions(setup, capsys, no_work, extra, message):
    out = setup / "out"
    argv = ["search", "--adapter", str(setup / "adapter"), "--output-dir", str(out)]
    rc = cli([*argv, "--val-size", "2", "--budget", "2", *extra])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 2 and "Traceback" not in err and len(lines) == 1
    assert lines[0].endswith(message)
    assert not out.exists() or not any(out.iterdir())


def test_cli_math_objective_cuts_long_prompts(setup, capsys):
    """The alpaca prompts are longer than 64 - 4 tokens: cut from the left, with a warning."""
    out = setup / "out"
    argv = ["search", "--adapter", str(setup / "adapter"), "--output-dir", str(out)]
    rc = cli(
        [*argv, "--val-size", "2", "--budget", "2", "--objective", "math"]
        + ["--max-new-tokens", "4"]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "2 of 2 prompts are longer than the model's 64 positions" in err
    assert (out / "search_results.json").is_file()
