"""``shears run``: every stage's sequence lengths are checked against the base model's positions
before the first stage starts; errors name the run-config key."""

from __future__ import annotations

import pytest

from context_helpers import cli, error_lines, short_folder
from shears.errors import ShearsError
from shears.pipeline import load_run_config, run_pipeline

SMALL = ["prune.nsamples=2", "prune.seqlen=32", "train.cutoff_len=64", "eval.max_new_tokens=3"]


@pytest.fixture
def no_stage(monkeypatch):
    """Fail the test if the training data is read or a stage starts."""

    def boom(*a, **k):
        raise AssertionError("a stage ran or data was read before the context check")

    import shears.prune.run as prune_run
    import shears.train.data as train_data

    monkeypatch.setattr(prune_run, "run", boom)
    monkeypatch.setattr(train_data, "load_train_examples", boom)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prune.seqlen=100", "prune.seqlen 100 exceeds the model's 64 positions (n_positions); "),
        ("prune.eval_ppl=true", "prune.ppl_seqlen 512 exceeds the model's 64 positions"),
        ("train.cutoff_len=400", "train.cutoff_len 400 exceeds the model's 64 positions"),
        ("search.cutoff_len=65", "search.cutoff_len 65 exceeds the model's 64 positions"),
        ("eval.max_new_tokens=64", "eval.max_new_tokens 64 exceeds the model's 64 positions"),
    ],
    ids=["prune.seqlen", "prune.ppl_seqlen", "train.cutoff_len", "search.cutoff_len", "eval"],
)
def test_lengths_checked_before_the_first_stage(
    tmp_path, tiny_tokenizer, no_stage, override, message
):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    cfg = load_run_config(None, [f"run_dir={tmp_path / 'run'}", f"model={model}", *SMALL, override])
    with pytest.raises(ShearsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_cli_run_one_line(tmp_path, tiny_tokenizer, no_stage, capsys):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    rc = cli(["run", f"run_dir={tmp_path / 'run'}", f"model={model}", *SMALL, "prune.seqlen=100"])
    err = capsys.readouterr().err
    lines = error_lines(err)
    assert rc == 2 and "Traceback" not in err and len(lines) == 1
    assert lines[0].endswith(
        "prune.seqlen 100 exceeds the model's 64 positions (n_positions); use prune.seqlen <= 64"
    )
