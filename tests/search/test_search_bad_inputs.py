"""``shears search`` on garbage --start / --space files, non-UTF-8 --data and a damaged adapter:
one line, exit 2; on a base other than the adapter's: a WARNING."""

from __future__ import annotations

import json

import pytest

from input_helpers import LATIN1_JSON, base_with_adapter, one_error, shears, write
from shears.adapters.io import META


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    root = tmp_path / "setup"
    base, adapter = base_with_adapter(root, tiny_tokenizer)
    other, _ = base_with_adapter(root / "other", tiny_tokenizer, seed=1)
    return root, base, adapter, other


def _search(setup, out, *extra):
    root, _, adapter, _ = setup
    return ("search", "--adapter", adapter, "--output-dir", out, "--val-size", "4", *extra)


@pytest.mark.parametrize("flag", ["--start", "--space"])
@pytest.mark.parametrize("content", [b'{"0.q_proj": ', LATIN1_JSON])
def test_garbage_start_and_space(capsys, setup, tmp_path, flag, content):
    bad = write(tmp_path / "bad.json", content)
    argv = _search(setup, tmp_path / "out", flag, bad)
    one_error(capsys, *argv, match=f"{flag} file '{bad}' is not")
    assert not (tmp_path / "out").exists()


def test_non_utf8_data(capsys, setup, tmp_path):
    data = write(tmp_path / "val.json", LATIN1_JSON)
    argv = _search(setup, tmp_path / "out", "--data", data)
    one_error(capsys, *argv, match=f"data file '{data}' is not UTF-8 text")


def test_damaged_adapter_metadata(capsys, setup, tmp_path):
    root, base, adapter, _ = setup
    broken = tmp_path / "adapter"
    broken.mkdir()
    for f in adapter.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    write(broken / META, b"{garbage")
    argv = ("search", "--adapter", broken, "--model", base, "--output-dir", tmp_path / "out")
    one_error(capsys, *argv, match="adapter metadata")


def test_warns_on_another_base(capsys, setup, tmp_path):
    root, base, adapter, other = setup
    argv = _search(setup, tmp_path / "o1", "--algorithm", "heuristic", "--no-plots")
    rc, lines = shears(capsys, *argv, "--model", other)
    assert rc == 0
    warned = [ln for ln in lines if " WARNING " in ln and "was trained on" in ln]
    assert len(warned) == 1 and f"but is searched on '{other}'" in warned[0]
    rc, lines = shears(
        capsys, *_search(setup, tmp_path / "o2", "--algorithm", "heuristic"), "--model", base
    )
    assert rc == 0 and not [ln for ln in lines if "was trained on" in ln]
    assert json.loads((tmp_path / "o2" / "search_results.json").read_text())["best"]
