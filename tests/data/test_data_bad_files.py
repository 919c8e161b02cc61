"""Files that are not what they claim (binary, not UTF-8, broken JSON) give one ShearsError that
names the file, never a traceback or silently replaced characters."""

from __future__ import annotations

import pytest

from input_helpers import BINARY, LATIN1_JSON, write
from shears.config import load_config_file
from shears.data.calibration import iter_texts
from shears.data.sources import read_json_rows
from shears.data.spec import validate_source
from shears.errors import ShearsError
from shears.inputs import (
    check_name_patterns,
    check_text_file,
    compile_regex,
    iter_text_lines,
    read_json_file,
    read_text_file,
)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_data_file_not_utf8(tmp_path, suffix):
    path = write(tmp_path / f"rows{suffix}", LATIN1_JSON)
    with pytest.raises(ShearsError, match=r"data file .*rows.* is not UTF-8 text \(invalid UTF-8"):
        read_json_rows(path)


def test_jsonl_data_names_the_bad_line(tmp_path):
    path = write(tmp_path / "rows.jsonl", '{"instruction": "a"}\n{"instruction": \n')
    with pytest.raises(ShearsError, match=r"rows.jsonl' line 2 is not valid JSON"):
        read_json_rows(path)


@pytest.mark.parametrize("name", ["calib.txt", "calib.json", "calib.jsonl"])
def test_binary_calibration_fails_before_any_model(tmp_path, name):
    path = write(tmp_path / name, BINARY)
    with pytest.raises(ShearsError, match=r"--calibration .* is not UTF-8 text"):
        validate_source(path, "--calibration")


def test_binary_after_the_checked_head_fails_when_read(tmp_path):
    """A NUL byte beyond the first 64 KiB passes the cheap check but not the lazy reader."""
    text = ("plain calibration text. " * 4000).encode()  # ~96 KB
    path = write(tmp_path / "late.txt", text + b"\x00\x01\x02 more\n")
    validate_source(path)
    with pytest.raises(ShearsError, match=r"late.txt' is not UTF-8 text \(a NUL byte"):
        list(iter_texts(path))


def test_non_utf8_jsonl_calibration(tmp_path):
    path = write(tmp_path / "c.jsonl", b'{"text": "ok"}\n' * 10 + b'{"text": "caf\xe9"}\n')
    with pytest.raises(ShearsError, match=r"--ppl-source .*c.jsonl' is not UTF-8 text"):
        list(iter_texts(path, what="--ppl-source"))


def test_config_file_not_utf8(tmp_path):
    path = write(tmp_path / "c.yaml", b"model: caf\xe9\n")
    with pytest.raises(ShearsError, match=r"config file .* is not UTF-8 text"):
        load_config_file(path)


def test_utf8_text_is_read_whole(tmp_path):
    """A BOM is dropped; a multi-byte character cut by the checked head is not an error."""
    path = write(tmp_path / "t.txt", "\ufeff" + "é" * 10 + "\n" + "ü" * 5)
    assert read_text_file(path, "text") == "é" * 10 + "\n" + "ü" * 5
    check_text_file(path, "text", nbytes=4)  # 3 BOM bytes + half of the first é
    assert "".join(iter_text_lines(path, "text")) == "é" * 10 + "\n" + "ü" * 5


def test_read_json_file_errors(tmp_path):
    with pytest.raises(ShearsError, match=r"--start file .*nope.json' does not exist"):
        read_json_file(tmp_path / "nope.json", "--start file")
    with pytest.raises(ShearsError, match=r"is a folder, not a file"):
        read_json_file(tmp_path, "--start file")
    bad = write(tmp_path / "bad.json", '{"a": ')
    with pytest.raises(ShearsError, match=r"--space file .*bad.json' is not valid JSON: Expecting"):
        read_json_file(bad, "--space file")
    lst = write(tmp_path / "list.json", [1, 2])
    with pytest.raises(
        ShearsError, match=r"must hold an object \{...\} at the top level, got list"
    ):
        read_json_file(lst, "adapter metadata", expect=dict)
    assert read_json_file(lst, "x") == [1, 2]


def test_bad_regex_names_flag_and_value():
    with pytest.raises(ShearsError, match=r"--targets 're:\[' is not a valid regular expression"):
        check_name_patterns(["q_proj", "re:["], "--targets")
    with pytest.raises(ShearsError, match=r"pattern 're:\(' is not a valid regular expression"):
        compile_regex("(", "pattern 're:('")
    check_name_patterns(["q_proj", r"re:.*\.(q|v)_proj"], "--targets")
