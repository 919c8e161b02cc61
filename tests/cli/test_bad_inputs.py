"""Issue 12's fuzz table: bad or hostile inputs to every ``shears`` command end in exit code 2,
one line on stderr naming the bad value, no traceback, nothing written and every input untouched.

The table lives in ``bad_inputs_table.py`` (shared with ``bench/bad_inputs.py``); each row runs
``shears.cli.main`` in-process in its own copy of a tiny world built once per module.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from bad_inputs_table import (
    CASES,
    OWN_OUTPUT_RERUNS,
    Case,
    build_world,
    describe,
    rerun_own_output,
    run_case,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny models, a real output of every command, data and config files, user folders."""
    return build_world(tmp_path_factory.mktemp("bad_inputs_world") / "w")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_error(case, world, tmp_path):
    result = run_case(case, world, tmp_path)
    assert result.outcome == "clear", describe(result)


@pytest.mark.parametrize("command", sorted(OWN_OUTPUT_RERUNS))
def test_overwrite_still_replaces_the_commands_own_output(command, world, tmp_path):
    """The refusals above must not come from refusing everything: ``--overwrite`` on a folder the
    same command wrote replaces it, leaves no temp / ``.old`` folder and touches nothing else."""
    res, outside = rerun_own_output(command, world, tmp_path)
    assert res.exc is None, res.exc
    assert res.rc == 0, res.stderr
    assert outside == [], f"written or changed outside the output folder: {outside}"


def _fake_main(effect):
    def main(argv):
        import logging

        from shears.utils import setup_logging

        setup_logging()
        rc = effect()
        logging.getLogger("shears").error("bad --thing 'x'")
        return rc

    return main


@pytest.mark.parametrize(
    ("effect", "outcome"),
    [
        (lambda: 2, "clear"),
        (lambda: 0, "silent"),
        (lambda: 1 / 0, "traceback"),
        (lambda: Path("notes.txt").unlink() or 2, "data_loss"),
        (lambda: Path("userdir/notes.txt").write_text("x") and 2, "data_loss"),
        (lambda: Path(".out.tmp-1").mkdir() or 2, "other"),
        (lambda: Path("../.w.tmp-1").mkdir() or 2, "other"),
        (lambda: print("second line", file=sys.stderr) or 2, "other"),
    ],
    ids=["clear", "exit-0", "exception", "file-gone", "file-changed", "temp-left",
         "temp-beside-world", "two-lines"],
)  # fmt: skip
def test_the_harness_sees_each_outcome(effect, outcome, world, tmp_path, monkeypatch):
    """The table's checks are real: a fake ``main`` that deletes or changes a user file, leaves a
    temp folder (also beside the world folder), raises, prints a second line or exits 0 is
    classified as such."""
    import shears.cli

    monkeypatch.setattr(shears.cli, "main", _fake_main(effect))
    case = Case("fake", ("prune", "--thing", "x"), ("--thing",))
    assert run_case(case, world, tmp_path).outcome == outcome


def test_the_bench_prints_only_its_json(tmp_path):
    """``bench/bad_inputs.py`` in a fresh process: stdout is one JSON document (libraries' import
    notices go to stderr) with the count of every case it ran."""
    import json
    import subprocess

    from conftest import subprocess_env

    bench = Path(__file__).resolve().parents[2] / "bench" / "bad_inputs.py"
    proc = subprocess.run([sys.executable, str(bench), "-k", "generate-prompts-file"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["cases"] == 4 and report["overall"]["clear"] == 4
