"""``shears train`` on a bad --targets / --groups regex, a --groups pattern that matches nothing, a
non-UTF-8 --data file and a garbage .gguf: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from input_helpers import BINARY, LATIN1_JSON, ROWS, one_error, write


def _train(tmp, model, *extra):
    out = tmp / "out"
    return ("train", "--model", model, "--output-dir", out, "--max-steps", "1", *extra)


@pytest.mark.parametrize(
    ("flag", "value", "match"),
    [
        ("--targets", "re:[", "targets 're:[' is not a valid regular expression"),
        ("--groups", "q_proj;re:(up", "groups 're:(up' is not a valid regular expression"),
    ],
)
def test_bad_regex(capsys, tmp_path, tiny_folder, flag, value, match):
    data = write(tmp_path / "d.json", ROWS)
    one_error(capsys, *_train(tmp_path, tiny_folder, "--data", data, flag, value), match=match)
    assert not (tmp_path / "out").exists()


def test_groups_pattern_matching_nothing(capsys, tmp_path, tiny_folder):
    data = write(tmp_path / "d.json", ROWS)
    groups = "q_proj,k_projj,v_proj;up_proj;down_proj"
    argv = _train(tmp_path, tiny_folder, "--data", data, "--groups", groups, "--widths", "4,2")
    line = one_error(capsys, *argv, match="groups pattern 'k_projj'")
    assert "matches no target module" in line and "self_attn.k_proj" in line
    assert not (tmp_path / "out").exists()


def test_non_utf8_data(capsys, tmp_path, tiny_folder):
    data = write(tmp_path / "d.json", LATIN1_JSON)
    argv = _train(tmp_path, tiny_folder, "--data", data)
    one_error(capsys, *argv, match=f"data file '{data}' is not UTF-8 text")


def test_garbage_gguf(capsys, tmp_path):
    gguf = write(tmp_path / "m.gguf", BINARY)
    data = write(tmp_path / "d.json", ROWS)
    one_error(capsys, *_train(tmp_path, gguf, "--data", data), match="is not a GGUF file")
