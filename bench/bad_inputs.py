"""Run issue 12's fuzz table of bad inputs (``tests/cli/bad_inputs_table.py``) and count outcomes.

Every case runs ``shears.cli.main`` in-process in its own copy of a tiny world (tiny random models,
a real output of every command, data files, user folders); see the table module for the world and
the outcomes. Prints one JSON object:

- ``overall`` and ``by_command``: counts of ``clear`` (exit 2, one stderr line naming the bad
  value, nothing written, inputs untouched), ``traceback``, ``silent`` (exit 0), ``data_loss`` (an
  input or user file changed or vanished) and ``other`` (wrong exit code, several error lines, a
  message that names nothing, or files left behind);
- ``failing``: ``{case id: "outcome: reason"}`` for every case that is not ``clear``;
- ``clear_with_noise``: clear cases that also printed INFO log lines or progress bars first.

    .venv/bin/python bench/bad_inputs.py              # the whole table (about a minute on CPU)
    .venv/bin/python bench/bad_inputs.py -k train-    # only cases whose id contains "train-"
    .venv/bin/python bench/bad_inputs.py -v           # also print each failure's details to stderr
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cli"))
sys.path.insert(0, str(ROOT / "tests"))

from bad_inputs_table import (  # noqa: E402
    CASES,
    COMMANDS,
    OUTCOMES,
    build_world,
    describe,
    run_case,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", dest="only", default="", help="run only cases whose id contains this")
    p.add_argument("-v", "--verbose", action="store_true", help="print failure details to stderr")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (path printed)")
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    cases = [c for c in CASES if args.only in c.id]
    with contextlib.redirect_stdout(sys.stderr):  # libraries' import-time lines (DeepSpeed's
        report = _run(cases, args)  # accelerator notice) must not precede the JSON
    print(json.dumps(report, indent=2))
    return 0


def _run(cases: list, args: argparse.Namespace) -> dict:
    """Build the world, run ``cases``, count outcomes."""
    tmp = Path(tempfile.mkdtemp(prefix="shears-bad-inputs-"))
    t0 = time.perf_counter()
    world = build_world(tmp / "world" / "w")
    t_world = time.perf_counter() - t0
    counts = {cmd: dict.fromkeys(OUTCOMES, 0) for cmd in COMMANDS}
    failing: dict[str, str] = {}
    noisy: list[str] = []
    for case in cases:
        o = run_case(case, world, tmp / "cases" / case.id)
        counts[case.command][o.outcome] += 1
        if o.outcome != "clear":
            failing[case.id] = f"{o.outcome}: {o.reason}"
            if args.verbose:
                print("-" * 80 + "\n" + describe(o), file=sys.stderr)
        elif o.info_lines:
            noisy.append(case.id)
    overall = {k: sum(c[k] for c in counts.values()) for k in OUTCOMES}
    report = {
        "cases": len(cases),
        "overall": overall,
        "by_command": {cmd: c for cmd, c in counts.items() if sum(c.values())},
        "cases_per_command": {cmd: sum(c.values()) for cmd, c in counts.items() if sum(c.values())},
        "failing": failing,
        "clear_with_noise": noisy,
        "seconds": {"world": round(t_world, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    if args.keep:
        report["kept"] = str(tmp)
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return report


if __name__ == "__main__":
    sys.exit(main())
