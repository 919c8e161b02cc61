"""shears.outputs: which folders a command may write or replace, atomic replacement, cleanup."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shears.errors import ShearsError
from shears.outputs import (
    MARKER,
    atomic_output,
    check_output,
    claim,
    clean_stale,
    owner,
    read_marker,
)


def _tree(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    "where, message",
    [
        (".", "current folder"),
        ("..", "current folder"),
        ("~", "home folder"),
        ("/", "root"),
    ],
)
def test_protected_folders_refused_even_with_overwrite(where, message, tmp_path, monkeypatch):
    work = tmp_path / "home" / "code" / "proj"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(work)
    with pytest.raises(ShearsError, match=message):
        check_output(where, "prune", overwrite=True)


def test_output_under_a_file_or_a_file_refused(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(ShearsError, match="lies under .*f.txt.*which is a file"):
        check_output(f / "out", "prune")
    with pytest.raises(ShearsError, match="is a file"):
        check_output(f, "prune", overwrite=True)
    assert f.read_text() == "x"


@pytest.mark.parametrize(
    "out, inp, message",
    [
        ("base", "base", "holds the input"),
        ("base", "base/model.safetensors", "holds the input"),
        ("base/adapter", "base", "lies inside the input"),
    ],
)
def test_outputs_must_not_overlap_inputs(out, inp, message, tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.safetensors").write_text("w")
    with pytest.raises(ShearsError, match=message):
        check_output(tmp_path / out, "train", overwrite=True, inputs=[str(tmp_path / inp)])
    # relative and absolute spellings of the same path are the same path
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ShearsError, match=message):
        check_output(f"./{out}", "train", overwrite=True, inputs=[str(tmp_path / inp)])


def test_hub_ids_and_names_are_not_paths(tmp_path):
    assert check_output(tmp_path / "o", "prune", inputs=["org/model", "smollm2-135m", None])


def test_foreign_folder_never_replaced(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ShearsError, match="not written by shears"):
            check_output(out, "prune", overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "mine"


def test_other_commands_output_and_extra_user_files_refused(tmp_path):
    out = tmp_path / "o"
    with atomic_output(out, "prune") as tmp:
        (tmp / "prune_report.json").write_text("{}")
    assert read_marker(out)["stage"] == "prune"
    with pytest.raises(ShearsError, match="output of `shears prune`, not of `shears export`"):
        check_output(out, "export", overwrite=True)
    with pytest.raises(ShearsError, match="already exists .*pass --overwrite"):
        check_output(out, "prune")
    check_output(out, "prune", overwrite=True)  # ours: may be replaced
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ShearsError, match=r"did not write \(notes.txt\)"):
        check_output(out, "prune", overwrite=True)


def test_unmarked_output_of_an_older_version_is_recognised(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "train_config.json").write_text("{}")
    assert owner(out) == ("train", None)
    check_output(out, "train", overwrite=True)


def test_atomic_replacement_keeps_the_old_output_until_the_new_one_is_done(tmp_path):
    out = tmp_path / "o"
    with atomic_output(out, "export") as tmp:
        (tmp / "a.txt").write_text("old")
    before = _tree(tmp_path)
    with pytest.raises(RuntimeError), atomic_output(out, "export", overwrite=True) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("killed")
    assert _tree(tmp_path) == before  # old output intact, no temp folder left
    with atomic_output(out, "export", overwrite=True) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]


def test_stale_temp_folders_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "o"
    dead, alive = _dead_pid(), os.getpid()
    stale = [tmp_path / f".o.tmp-{dead}-abc", tmp_path / f".o.old-{dead}-x"]
    keep = [tmp_path / f".o.tmp-{alive}-abc", tmp_path / f".other.tmp-{dead}-x", tmp_path / "o2"]
    for d in stale + keep:
        d.mkdir()
        (d / "big.bin").write_bytes(b"0" * 10)
    clean_stale(out)
    assert not any(d.exists() for d in stale)
    assert all(d.exists() for d in keep)


def test_a_folder_holding_only_the_marker_counts_as_empty(tmp_path):
    out = tmp_path / "o"
    claim(out, "search", ["search_log.jsonl"])
    check_output(out, "search")  # no --overwrite needed: nothing of value there
    claim(out, "search", ["search_results.json"])
    assert set(read_marker(out)["owned"]) >= {"search_log.jsonl", "search_results.json"}
