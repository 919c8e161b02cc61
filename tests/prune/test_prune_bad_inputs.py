"""``shears prune`` on bad regexes, damaged model files, binary calibration text and an N:M pattern
with a conflicting --sparsity: one clear line (exit 2) before the model loads, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from input_helpers import BINARY, one_error, shears, write
from shears.config import from_dict, to_dict
from shears.errors import ShearsError
from shears.models import load_model, validate_model_spec
from shears.prune import PruneConfig
from shears.prune import run as prune_run


@pytest.fixture
def no_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(prune_run, "load_model", boom)


@pytest.mark.parametrize(
    ("flag", "pattern", "message"),
    [
        ("--targets", "re:[", "--targets 're:[' is not a valid regular expression"),
        ("--ignore", "re:(", "--ignore 're:(' is not a valid regular expression"),
        ("--targets", "q_proj,re:*x", "--targets 're:*x' is not a valid regular expression"),
    ],
)
def test_bad_regex_is_one_line(capsys, tmp_path, tiny_folder, no_load, flag, pattern, message):
    out = tmp_path / "out"
    one_error(
        capsys, "prune", "--model", tiny_folder, flag, pattern, "--output-dir", out, match=message
    )
    assert not out.exists()


def test_garbage_gguf_is_one_line(capsys, tmp_path, no_load):
    gguf = write(tmp_path / "model.gguf", BINARY)
    one_error(
        capsys,
        "prune",
        "--model",
        gguf,
        "--output-dir",
        tmp_path / "out",
        match="is not a GGUF file (it does not start with the magic bytes b'GGUF'",
    )


def test_garbage_gguf_inside_a_folder(tmp_path):
    write(tmp_path / "m.gguf", b"GGUX" + BINARY)
    with pytest.raises(ShearsError, match="is not a GGUF file"):
        validate_model_spec(str(tmp_path), gguf_file="m.gguf")


@pytest.mark.parametrize(
    ("damage", "content"),
    [
        ("model.safetensors", BINARY),  # not safetensors
        ("model.safetensors", b""),  # empty
        ("config.json", b"{garbage"),
    ],
)
def test_damaged_model_folder_is_one_error(tmp_path, tiny_folder, damage, content):
    write(Path(tiny_folder) / damage, content)
    with pytest.raises(ShearsError, match=r"could not load model .*tiny'"):
        load_model(tiny_folder, device="cpu")


def test_truncated_gguf_is_one_error(tmp_path):
    """Right magic bytes, then nothing valid: the GGUF reader fails inside transformers."""
    gguf = write(tmp_path / "t.gguf", b"GGUF" + b"\x03\x00\x00\x00" + b"\x01" * 40)
    with pytest.raises(ShearsError, match=r"could not load model .*t.gguf' \(damaged"):
        load_model(gguf, device="cpu")


def test_binary_calibration_is_one_line(capsys, tmp_path, tiny_folder, no_load):
    calib = write(tmp_path / "calib.txt", BINARY)
    one_error(
        capsys,
        "prune",
        "--model",
        tiny_folder,
        "--calibration",
        calib,
        "--output-dir",
        tmp_path / "out",
        match="--calibration",
    )
    rc, lines = shears(
        capsys,
        "prune",
        "--model",
        tiny_folder,
        "--method",
        "magnitude",
        "--eval-ppl",
        "--ppl-source",
        calib,
        "--output-dir",
        tmp_path / "out",
    )
    assert rc == 2 and len(lines) == 1 and "--ppl-source" in lines[0] and "not UTF-8" in lines[0]


def test_pattern_with_conflicting_sparsity_fails(capsys, tmp_path, tiny_folder, no_load):
    one_error(
        capsys,
        "prune",
        "--model",
        tiny_folder,
        "--pattern",
        "2:4",
        "--sparsity",
        "0.3",
        "--output-dir",
        tmp_path / "out",
        match="--sparsity 0.3 conflicts with --pattern 2:4",
    )
    with pytest.raises(ShearsError, match="conflicts with --pattern 1:4"):
        PruneConfig(pattern="1:4", sparsity=0.5)  # 0.5 is not "not given" any more


def test_sparsity_default_and_saved_config():
    """No flag: 0.5 unstructured, N/M for a pattern; an equal explicit value and a saved
    prune_config.json (sparsity resolved) are accepted."""
    assert PruneConfig().sparsity == 0.5
    assert PruneConfig(sparsity=0.3).sparsity == 0.3
    assert PruneConfig(pattern="1:4").sparsity == 0.25
    assert PruneConfig(pattern="1:3", sparsity=1 / 3).sparsity == pytest.approx(1 / 3)
    assert PruneConfig(pattern="2:4", sparsity=0.5).sparsity == 0.5
    saved = json.loads(json.dumps(to_dict(PruneConfig(pattern="2:4"))))
    assert saved["sparsity"] == 0.5
    assert from_dict(PruneConfig, saved).nm == (2, 4)


def test_prune_with_no_sparsity_flag_runs_at_half(capsys, tmp_path, tiny_folder):
    out = tmp_path / "out"
    argv = ["prune", "--model", tiny_folder, "--method", "magnitude", "--no-plot"]
    rc, _ = shears(capsys, *argv, "--output-dir", out)
    assert rc == 0
    assert json.loads((out / "prune_report.json").read_text())["sparsity"] == 0.5
    assert json.loads((out / "prune_config.json").read_text())["sparsity"] == 0.5
