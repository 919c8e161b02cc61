"""Does NLS sampling the maximal sub-adapter more often close the gap to LoRA? Validation only.

In the ablation at the paper's budget (bench/ablation.py) the NLS super-adapter's sub-adapters
(min, heuristic, max) all score below a LoRA of rank r_max trained alone with the same steps, on
the validation split. NLS samples every group's width uniformly and independently, so the whole
maximal sub-adapter is almost never trained as one: with 90 groups, never. ``shears train
--nls-max-prob P`` makes a step the maximal sub-adapter with probability P (the other steps stay
uniform samples). This script trains NLS at each ``--probs`` on the grid's cells, with the grid's
settings, data, pruned bases and seeds (P = 0 is the grid's own Shears training, reused), and
reports the **validation** accuracy of the min, heuristic and max sub-adapters next to the grid's
LoRA r_max, one JSON. The test split is not read: this chooses what to test, it is not a result.

    .venv/bin/python bench/nls_sampling.py --out runs/ablation --cells math:0.4 mc:0.5 --probs 0 0.5

Resumable (each step has its ledger in ``--out``, as the grid's). Needs the grid's pruned bases
and, for the LoRA column, its ``lora_pruned`` units (run again here when missing).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablation  # noqa: E402  (the grid's settings, planner and step runner)

RESULT = Path(__file__).resolve().parent / "results" / "nls_sampling.json"
SUBS = ("min", "heuristic", "max")


def variant(p: float) -> str:
    """The folder of an NLS training at max-probability ``p`` (0: the grid's ``shears``; else
    the grid's name for it, so that the grid reuses a probe's training)."""
    return "shears" if p == 0 else ablation.maxp_kind(p)


def plan_cell(pl: ablation.Planner, task: str, sp: float, seed: int, recipe: str,
              probs: list[float]) -> dict[str, tuple[str, dict[str, str]]]:  # fmt: skip
    """The steps of one cell: per probability a training and its validation evaluations; and
    the grid's LoRA r_max with its validation evaluation. Returns {variant: (training step,
    {sub-adapter: evaluation step})}."""
    base = pl.prune(sp)
    cell = f"{task}/{recipe}/{ablation._sp(sp)}/seed{seed}"
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for p in probs:
        kind = variant(p)
        kw = {"nls_max_prob": p} if p else {}
        t = pl.train(f"{cell}/{kind}/train", task, recipe, seed, base, **kw)
        # the grid names the heuristic's validation step eval_val_heuristic: reused for P = 0
        evals = {s: pl.evaluate(f"{cell}/{kind}/eval_val_{s}", task, base, t, s, "validation")
                 for s in SUBS}  # fmt: skip
        out[kind] = (t, evals)
    r_max = max(ablation.SCALE["space"]["widths"])
    t = pl.train(f"{cell}/lora_pruned/train", task, recipe, seed, base,
                 space={**ablation.SCALE["space"], "widths": [r_max]})  # fmt: skip
    out["lora_pruned"] = (t, {"max": pl.evaluate(f"{cell}/lora_pruned/eval_val", task, base, t,
                                                 "max", "validation")})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="runs/ablation", help="the grid's study folder")
    ap.add_argument("--cells", nargs="+", default=["math:0.4", "mc:0.5"], help="task:sparsity")
    ap.add_argument("--probs", nargs="+", type=float, default=[0.0, 0.5])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--result", default=str(RESULT), help="the JSON written")
    a = ap.parse_args(argv)
    cells = []
    for c in a.cells:
        task, _, sp = c.partition(":")
        if task not in ablation.SCALE["tasks"] or not sp:
            ap.error(f"cell {c!r}: want task:sparsity, task one of {list(ablation.SCALE['tasks'])}")
        cells.append((task, float(sp)))
    if bad := [p for p in a.probs if not 0 <= p < 1]:
        ap.error(f"--probs {bad[0]}: each must be in [0, 1)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    out = Path(a.out).resolve()
    recipes = ablation.choose_recipes(ablation.RESULTS, [t for t, _ in cells])
    report: dict = {"settings": {"probs": a.probs, "seed": a.seed, "threads": a.threads,
                                 "split": "validation", "scale": ablation.SCALE}, "cells": {}}  # fmt: skip
    for task, sp in cells:
        pl = ablation.Planner(out, "cpu")
        evals = plan_cell(pl, task, sp, a.seed, recipes[task], a.probs)
        steps = [pl.steps[n] for n in pl.steps]  # prune first, then in planning order
        t0 = time.perf_counter()
        ran = ablation.run_unit(out, ablation.Unit(f"nls_sampling/{task}", steps))
        logger.info(
            "%s at %s: ran %d steps in %.0f s", task, sp, len(ran), time.perf_counter() - t0
        )
        cell: dict = {}
        for kind, (t, subs) in evals.items():
            cell[kind] = {
                "val_accuracy": {s: _accuracy(out / n) for s, n in subs.items()},
                **_losses(out / t),
            }
        report["cells"][f"{task} at {round(sp * 100)} %"] = cell
        _write(Path(a.result), report)
    print(json.dumps(report["cells"], indent=1))
    return report


def _losses(train: Path, tail: int = 40) -> dict[str, float]:
    """Mean training loss over every logged step, and over the last ``tail`` steps, from
    ``trainer_state.json`` (``train_results.json``'s ``train_loss`` covers only the steps of the
    last session of a resumed run)."""
    log = json.loads((train / "trainer_state.json").read_text())["log_history"]
    losses = [float(e["loss"]) for e in log if "loss" in e]
    return {
        "loss_mean": sum(losses) / len(losses),
        f"loss_last{tail}": sum(losses[-tail:]) / len(losses[-tail:]),
    }


def _accuracy(folder: Path) -> float:
    return json.loads((folder / "eval_results.json").read_text())["mean_accuracy"]


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


logger = logging.getLogger("shears.nls_sampling")

if __name__ == "__main__":
    main(sys.argv[1:])
