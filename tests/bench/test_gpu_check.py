"""bench/gpu_check.sh, the script a GPU session runs, at smoke size on the CPU: every stage runs
through the real CLI and stock PEFT loads the export; the output is one JSON line."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_prints_one_json_line(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--smoke", "--device", "cpu",
         "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    # one JSON line, the last (an installed DeepSpeed may log a line of its own before it)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == lines[0]
    record = json.loads(lines[0])
    assert proc.returncode == 0 and record["ok"], record.get("error")
    stages = record["stages"]
    for name in ("prune", "train", "search", "export"):
        assert stages[name]["wall_s"] > 0
    assert stages["prune"]["peak_rss_mib"] > 0
    assert stages["peft_load"]["finite"] is True
    assert record["model"]["layers"] == 2
    assert not any(tmp_path.iterdir())  # the working folder is removed
