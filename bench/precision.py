"""fp32 vs bf16 autocast on this CPU, stage by stage, with the quality figure next to each time
(issue 14). One JSON (``--out``), resumable: a finished step's output is reused.

Rows, each side by side in one run (same threads, same inputs):

- ``prune``: Wanda on SmolLM2-135M at ``--nsamples`` x ``--seqlen`` calibration tokens (128 x 512)
  to 50 %, ``--precision fp32`` vs ``bf16``: calibration + pruning seconds, held-out perplexity of
  the pruned model (measured in fp32 for both), and how many mask entries agree;
- ``llm-compressor``: its ``WandaPruningModifier`` on the same windows (bench/prune_llmcompressor.py
  in its own environment, ``--llmc-python``), back to back with ours;
- ``train``: the demo's NLS training (40 % base, 80 steps x batch 8, answer-only loss) in fp32 vs
  bf16 mixed precision (fp32 master weights): seconds per step, final loss, and the test accuracy
  of the heuristic sub-adapter (evaluated in fp32);
- ``eval``: the fp32-trained adapter on the demo's 200 test problems, evaluated in fp32 vs under
  bf16 autocast: seconds, accuracy, and how many answers are identical.

    .venv/bin/python bench/precision.py --work runs/precision --out bench/results/precision_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"
TASK = "gym:chain_sum?min_terms=2&max_terms=2&max_digits=2"
PRECISIONS = ("fp32", "bf16")


def shears(args: list[str], threads: int) -> float:
    """``python -m shears <args>`` in a fresh process; its wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "shears", *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"shears {args[0]} failed: {proc.stderr[-3000:]}")
    return round(time.perf_counter() - t0, 1)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def prune_rows(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Wanda 50 % at nsamples x seqlen, fp32 vs bf16 autocast; masks compared."""
    import torch
    from safetensors.torch import load_file

    rows: dict[str, Any] = {}
    for p in PRECISIONS:
        out = work / f"prune_{p}"
        if not (out / "prune_report.json").is_file():
            shears(["prune", "--model", MODEL, "--output-dir", str(out), "--sparsity", "0.5",
                    "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen), "--precision", p,
                    "--eval-ppl", "--no-plot", "--device", "cpu"], a.threads)  # fmt: skip
        rep = _json(out / "prune_report.json")
        sec = rep["seconds"]
        rows[p] = {
            "seconds": round(sec["calibration_data"] + sec["prune"], 1),
            "perplexity_dense": rep["perplexity"]["dense"] if rep.get("perplexity") else None,
            "perplexity_pruned": rep["perplexity"]["pruned"] if rep.get("perplexity") else None,
            "autocast": rep.get("autocast"),
        }

    def masks(folder: Path) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for f in sorted(folder.glob("*.safetensors")):
            out.update(
                {k: v == 0 for k, v in load_file(str(f)).items() if k.endswith("proj.weight")}
            )
        return out

    m32, m16 = masks(work / "prune_fp32"), masks(work / "prune_bf16")
    same = sum(int((m32[k] == m16[k]).sum()) for k in m32)
    total = sum(m32[k].numel() for k in m32)
    rows["mask_agreement"] = round(same / total, 5)
    rows["bf16_over_fp32_time"] = round(rows["bf16"]["seconds"] / rows["fp32"]["seconds"], 3)
    return rows


def llmc_row(work: Path, a: argparse.Namespace) -> dict[str, Any] | None:
    """llm-compressor's Wanda on the same calibration windows (None: its environment is missing)."""
    if not Path(a.llmc_python).is_file():
        return None
    import torch
    from transformers import AutoTokenizer

    from shears.data.calibration import calibration_ids
    from shears.models import resolve_named_default

    folder = resolve_named_default(MODEL)
    windows = work / "windows.pt"
    if not windows.is_file():
        ids = calibration_ids(
            AutoTokenizer.from_pretrained(folder), nsamples=a.nsamples, seqlen=a.seqlen, seed=0
        )
        torch.save(ids, windows)
    done = work / "llmc.json"
    if not done.is_file():
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
        proc = subprocess.run(
            [a.llmc_python, str(ROOT / "bench" / "prune_llmcompressor.py"), "--model", str(folder),
             "--windows", str(windows), "--threads", str(a.threads)],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"llm-compressor failed: {proc.stderr[-3000:]}")
        done.write_text(proc.stdout.strip().splitlines()[-1])
    return _json(done)


def train_rows(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The demo's NLS training in fp32 vs bf16 mixed precision, each evaluated in fp32."""
    base = work / "base40"
    if not (base / "prune_report.json").is_file():
        shears(["prune", "--model", MODEL, "--output-dir", str(base), "--sparsity", "0.4",
                "--nsamples", "32", "--seqlen", "256", "--precision", "fp32", "--no-plot",
                "--device", "cpu"], a.threads)  # fmt: skip
    rows: dict[str, Any] = {}
    for p in PRECISIONS:
        out = work / f"train_{p}"
        if not (out / "train_results.json").is_file():
            shears(["train", "--model", str(base), "--data", TASK, "--output-dir", str(out),
                    "--train-size", "512", "--max-steps", str(a.steps), "--batch-size", "8",
                    "--lr", "5e-4", "--warmup", "0.1", "--cutoff-len", "128", "--save-steps",
                    str(a.steps), "--no-train-on-inputs", "--precision", p, "--device", "cpu"],
                   a.threads)  # fmt: skip
        res = _json(out / "train_results.json")
        ev = evaluate(work, out, "fp32", a)
        rows[p] = {
            "seconds_per_step": round(res["train_runtime_s"] / res["global_steps"], 3),
            "final_loss": res["final_loss"],
            "test_accuracy_fp32_eval": ev["accuracy"],
        }
    rows["bf16_over_fp32_time"] = round(
        rows["bf16"]["seconds_per_step"] / rows["fp32"]["seconds_per_step"], 3
    )
    return rows


def evaluate(work: Path, adapter: Path, precision: str, a: argparse.Namespace) -> dict[str, Any]:
    """Heuristic sub-adapter of ``adapter`` on the demo's test problems under ``precision``."""
    out = work / f"eval_{adapter.name}_{precision}"
    if not (out / "eval_results.json").is_file():
        shears(["eval", "--model", str(work / "base40"), "--adapter", str(adapter),
                "--sub-adapter", "heuristic", "--tasks", f"math:{TASK}", "--limit", str(a.limit),
                "--max-new-tokens", "24", "--batch-size", "32", "--precision", precision,
                "--output-dir", str(out), "--device", "cpu", "--no-progress"], a.threads)  # fmt: skip
    res = _json(out / "eval_results.json")
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines() if x]
    return {"accuracy": res["mean_accuracy"], "seconds": res["time_s"], "predictions": preds}


def eval_rows(work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """The fp32-trained adapter evaluated in fp32 vs under bf16 autocast."""
    runs = {p: evaluate(work, work / "train_fp32", p, a) for p in PRECISIONS}
    answers = {p: [r["output"] for r in runs[p]["predictions"]] for p in PRECISIONS}
    same = sum(x == y for x, y in zip(answers["fp32"], answers["bf16"], strict=True))
    rows: dict[str, Any] = {
        p: {"seconds": runs[p]["seconds"], "accuracy": runs[p]["accuracy"]} for p in PRECISIONS
    }
    rows["identical_answers"] = f"{same}/{len(answers['fp32'])}"
    rows["bf16_over_fp32_time"] = round(rows["bf16"]["seconds"] / rows["fp32"]["seconds"], 3)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work", default="runs/precision", help="working folder (resumable)")
    ap.add_argument("--out", default="bench/results/precision_cpu.json", help="the JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every step")
    ap.add_argument("--nsamples", type=int, default=128, help="calibration windows")
    ap.add_argument("--seqlen", type=int, default=512, help="tokens per calibration window")
    ap.add_argument("--steps", type=int, default=80, help="NLS training steps (the demo's)")
    ap.add_argument("--limit", type=int, default=200, help="test problems evaluated")
    ap.add_argument("--llmc-python", default=str(ROOT / ".venv-llmc" / "bin" / "python"),
                    help="python of the llm-compressor environment (make llmc-venv)")  # fmt: skip
    ap.add_argument("--rows", default="prune,llmc,train,eval", help="rows to run")
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    from shears.deploy.cpu import cpu_info
    from shears.precision import AUTO_BF16_CPU, cpu_bf16

    record: dict[str, Any] = {
        "cpu": cpu_info(),
        "cpu_bf16": cpu_bf16(),
        "auto_bf16_cpu": AUTO_BF16_CPU,
        "threads": a.threads,
        "command": "bench/precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    rows = a.rows.split(",")
    if "prune" in rows:
        record["prune"] = {"nsamples": a.nsamples, "seqlen": a.seqlen, **prune_rows(work, a)}
    if "llmc" in rows:
        record["llm_compressor"] = llmc_row(work, a)
        if record["llm_compressor"] and "prune" in record:
            ours = record["prune"]["bf16"]["seconds"]
            record["prune"]["bf16_over_llm_compressor"] = round(
                ours / record["llm_compressor"]["seconds"], 3
            )
            record["prune"]["fp32_over_llm_compressor"] = round(
                record["prune"]["fp32"]["seconds"] / record["llm_compressor"]["seconds"], 3
            )
    if "train" in rows:
        record["train"] = train_rows(work, a)
    if "eval" in rows:
        record["eval"] = eval_rows(work, a)
    text = json.dumps(record, indent=2)
    Path(a.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
