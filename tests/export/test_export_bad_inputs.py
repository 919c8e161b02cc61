"""``shears export``: damaged --sub-adapter files and adapter folders are one line (exit 2); a
masked merge of an adapter not trained mask-aware says at WARNING how much of the update it drops;
another base than the adapter's is a WARNING."""

from __future__ import annotations

import pytest
from export_helpers import make_super_adapter

from input_helpers import LATIN1_JSON, one_error, shears, write
from shears.adapters.io import META, SPACE


@pytest.fixture
def setup(tmp_path, tiny_tokenizer):
    base, adapter, _ = make_super_adapter(tmp_path, tiny_tokenizer)
    return tmp_path, base, adapter


@pytest.mark.parametrize("content", [b'{"0.q_proj": ', LATIN1_JSON, b"\x00\x01binary"])
def test_bad_sub_adapter_file(capsys, setup, content):
    tmp, base, adapter = setup
    sub = write(tmp / "sub.json", content)
    argv = ("export", "--adapter", adapter, "--sub-adapter", sub, "--output-dir", tmp / "out")
    one_error(capsys, *argv, match=f"sub-adapter file '{sub}' is not")
    assert not (tmp / "out").exists()


@pytest.mark.parametrize("name", [META, SPACE])
def test_damaged_adapter_folder(capsys, setup, name):
    tmp, base, adapter = setup
    write(adapter / name, b"{garbage")
    argv = ("export", "--adapter", adapter, "--output-dir", tmp / "out")
    one_error(capsys, *argv, match=f"{name}' is not valid JSON")


def test_masked_merge_warns_with_the_dropped_share(capsys, setup):
    tmp, base, adapter = setup
    argv = ("export", "--adapter", adapter, "--output-dir", tmp / "out", "--merge")
    rc, lines = shears(capsys, *argv, "--keep-sparsity", "--no-verify")
    assert rc == 0
    warned = [ln for ln in lines if " WARNING " in ln and "masked merge drops" in ln]
    assert len(warned) == 1, lines
    share = float(warned[0].split("drops ")[1].split(" %")[0])
    assert 10 < share < 100  # half the base is zero: a large part of a random delta falls there


def test_warns_on_another_base(capsys, setup, tiny_tokenizer):
    tmp, base, adapter = setup
    other, _, _ = make_super_adapter(tmp / "other", tiny_tokenizer, seed=1)
    argv = ("export", "--adapter", adapter, "--output-dir", tmp / "out", "--no-verify")
    rc, lines = shears(capsys, *argv, "--model", other)
    assert rc == 0
    assert [ln for ln in lines if " WARNING " in ln and f"but is exported on '{other}'" in ln]
