"""Can W8A8 keep a tuned sparse model's accuracy? Variants of ``shears deploy --precision w8a8`` on
the demo's model (issue 16), each deployed and scored with the CLI, against int8-weights.

The model is a ``shears run`` folder (``--run``; the committed JSON used ``runs/demo-bf16``, the
README demo: 40 % Wanda SmolLM2-135M plus its searched sub-adapter, kept separate). Each variant
is one ``shears deploy`` (the flags below) and one ``shears eval --model <deployed>`` on the run's
task (200 test problems). Rows
record the test accuracy, the deploy-time verification (greedy-token agreement with PyTorch and
the largest logit difference on the probe prompt, in units of the logits' std), IR bytes and the
flags. Resumable: a variant whose ``eval_results.json`` exists is read, not run again.

    .venv/bin/python bench/w8a8.py --run runs/demo-bf16 --work runs/w8a8 --out bench/results/deploy_w8a8_smollm2.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

VARIANTS: dict[str, list[str]] = {  # name -> shears deploy flags
    "int8-weights": ["--precision", "int8-weights"],
    "w8a8 default-text": ["--precision", "w8a8", "--calibration", "default", "--w8a8-float", "none"],
    "w8a8 task": ["--precision", "w8a8", "--calibration", "task", "--w8a8-float", "none"],
    "w8a8 task sq0.5": [
        "--precision", "w8a8", "--calibration", "task", "--smooth-quant-alpha", "0.5",
        "--w8a8-float", "none",
    ],
    "w8a8 task down_proj-float": [
        "--precision", "w8a8", "--calibration", "task", "--w8a8-float", "down_proj",
    ],
    "w8a8 task sq0.5 down_proj-float": [
        "--precision", "w8a8", "--calibration", "task", "--smooth-quant-alpha", "0.5",
        "--w8a8-float", "down_proj",
    ],
    "w8a8 task sq0.95 down_proj-float": [
        "--precision", "w8a8", "--calibration", "task", "--smooth-quant-alpha", "0.95",
        "--w8a8-float", "down_proj",
    ],
}  # fmt: skip


def _shears(args: list[str], log: Path) -> None:
    with log.open("a") as fh:
        proc = subprocess.run([sys.executable, "-m", "shears", *args], stdout=fh, stderr=fh)
    if proc.returncode != 0:
        raise RuntimeError(f"shears {args[0]} failed (see {log})")


def variant_row(name: str, flags: list[str], run: Path, work: Path, limit: int) -> dict:
    """Deploy (unless done) and evaluate (unless done) one variant; its row."""
    slug = name.replace(" ", "_")
    dep, ev, log = work / f"deploy_{slug}", work / f"eval_{slug}", work / f"{slug}.log"
    if not (dep / "deploy_results.json").is_file():
        search = run / "search" / "search_results.json"
        _shears(
            ["deploy", "--model", str(run / "prune"), "--adapter", str(run / "train"),
             "--sub-adapter", str(search), "--output-dir", str(dep), "--overwrite", *flags],
            log,
        )  # fmt: skip
    if not (ev / "eval_results.json").is_file():
        task = json.loads((run / "run_config.json").read_text())["task"]
        _shears(
            ["eval", "--model", str(dep), "--tasks", f"math:{task}", "--limit", str(limit),
             "--gym-size", str(limit), "--max-new-tokens", "24", "--output-dir", str(ev),
             "--overwrite"],
            log,
        )  # fmt: skip
    d = json.loads((dep / "deploy_results.json").read_text())
    e = json.loads((ev / "eval_results.json").read_text())
    v = d.get("verification") or {}
    return {
        "flags": flags,
        "accuracy": e["mean_accuracy"],
        "count": sum(t["count"] for t in e["tasks"].values()),
        "calibration": d.get("calibration"),
        "probe_greedy_tokens_match": v.get("greedy_tokens_match"),
        "probe_max_logit_diff_in_std": v.get("rel_logit_diff"),
        "ir_bin_bytes": d["bytes"]["ir_bin"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/default", help="a finished `shears run` folder")
    p.add_argument("--work", default="runs/w8a8", help="deployed IRs and evaluations (reused)")
    p.add_argument("--limit", type=int, default=200, help="test problems")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    p.add_argument("--out", default=None, help="JSON file (bench/results/deploy_w8a8_*.json)")
    args = p.parse_args()
    run, work = Path(args.run), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name in args.variants.split(","):
        rows[name] = variant_row(name, VARIANTS[name], run, work, args.limit)
        print(f"{name}: {json.dumps(rows[name])}", file=sys.stderr)
    report = run / "report.json"
    pytorch = json.loads(report.read_text())["rows"] if report.is_file() else []
    out = {
        "run": str(run),
        "limit": args.limit,
        "pytorch": {r["variant"]: r["test_accuracy"] for r in pytorch},
        "variants": rows,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
