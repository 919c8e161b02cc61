"""``shears prune``: calibration and perplexity windows longer than the model's positions are one
clear error before any data is read (GPT-2 used to fail with an IndexError, LLaMA ran on past its
context)."""

from __future__ import annotations

import pytest
import torch
from prune_helpers import TEXT

from context_helpers import POSITIONS, cli, error_lines, short_folder
from shears.errors import ShearsError
from shears.prune import PruneConfig, prune_model, run_prune
from shears.prune import run as prune_run


@pytest.fixture
def calib(tmp_path):
    p = tmp_path / "calib.txt"
    p.write_text(TEXT)
    return str(p)


def _boom(*a, **k):
    raise AssertionError("reached a step that the context check should have stopped")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cli_seqlen_above_positions(tmp_path, tiny_tokenizer, calib, capsys, monkeypatch, arch):
    model = short_folder(tmp_path / "m", tiny_tokenizer, arch)
    monkeypatch.setattr(prune_run, "load_model", _boom)  # a folder's config.json is enough
    out = tmp_path / "out"
    argv = ["prune", "--model", model, "--calibration", calib, "--nsamples", "2"]
    rc = cli([*argv, "--seqlen", "100", "--output-dir", str(out)])
    err = capsys.readouterr().err
    key = "n_positions" if arch == "gpt2" else "max_position_embeddings"
    assert rc == 2 and "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].endswith(
        f"--seqlen 100 exceeds the model's {POSITIONS} positions ({key}); use --seqlen <= 64"
    )
    assert not out.exists()


def test_cli_ppl_seqlen_above_positions(tmp_path, tiny_tokenizer, calib, capsys):
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    out = tmp_path / "out"
    argv = ["prune", "--model", model, "--calibration", calib, "--nsamples", "2", "--seqlen", "32"]
    rc = cli([*argv, "--eval-ppl", "--ppl-seqlen", "100", "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "--ppl-seqlen 100 exceeds the model's 64 positions (n_positions)" in err
    assert not out.exists()


def test_magnitude_pruning_reads_no_windows(tmp_path, tiny_tokenizer):
    """--seqlen is unused by magnitude pruning: no error for it."""
    model = short_folder(tmp_path / "m", tiny_tokenizer)
    cfg = PruneConfig(
        model=model, method="magnitude", seqlen=100, output_dir=str(tmp_path / "o"), plot=False
    )
    run_prune(cfg, progress=False)
    assert (tmp_path / "o" / "prune_report.json").is_file()


def test_checked_after_loading_when_the_config_is_unreadable(
    tmp_path, tiny_tokenizer, calib, monkeypatch
):
    """GGUF / hub models: the limit is known only once loaded; still before any data is read."""
    import shears.models as models

    model = short_folder(tmp_path / "m", tiny_tokenizer)
    monkeypatch.setattr(models, "model_config", lambda *a, **k: None)
    monkeypatch.setattr(prune_run, "build_calibration", _boom)
    cfg = PruneConfig(model=model, calibration=calib, nsamples=2, seqlen=100, output_dir="x")
    with pytest.raises(ShearsError, match=r"--seqlen 100 exceeds the model's 64 positions"):
        run_prune(cfg, progress=False)


def test_prune_model_checks_calibration_width(tiny_tokenizer):
    from conftest import tiny_model

    model = tiny_model("gpt2", tokenizer=tiny_tokenizer, max_positions=POSITIONS)
    ids = torch.randint(0, 100, (2, 100))
    with pytest.raises(ShearsError, match=r"--seqlen 100 exceeds the model's 64 positions"):
        prune_model(model, tiny_tokenizer, PruneConfig(nsamples=2), calibration=ids)
