"""Why do NLS super-adapters score below a LoRA trained alone? Probes on the validation split only.

In the ablation at the paper's budget (bench/ablation.py) the NLS super-adapter's sub-adapters
(min, heuristic, max) all score below a LoRA of rank r_max trained alone with the same steps, on
the validation split. Two suspects, each probed on the grid's cells with the grid's settings,
data, pruned bases and seed (a probe at the grid's own settings reuses the grid's training):

- **sampling** (``--probs``): NLS samples every group's width uniformly and independently, so the
  maximal sub-adapter is never trained as one (90 groups). ``shears train --nls-max-prob P``
  makes a step the maximal sub-adapter with probability P;
- **learning rate** (``--lrs``, NLS and the LoRA alike): each of NLS's wider columns is updated
  on a fraction of the steps only, so it may want another learning rate than the LoRA.

Reports the **validation** accuracy of the min, heuristic and max sub-adapters (the LoRA: its
one adapter) and the training losses, in one JSON that accumulates across runs (a variant run
again replaces its row). The test split is not read: this chooses what to test, it is not a
result.

    .venv/bin/python bench/nls_probe.py --out runs/ablation --cells math:0.4 mc:0.5 --probs 0 0.5
    .venv/bin/python bench/nls_probe.py --out runs/ablation --cells math:0.4 --probs 0 --lrs 2.5e-4 1e-3

Resumable (each step has its ledger in ``--out``, as the grid's). Needs the grid's pruned bases
(run again here when missing).
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

RESULT = Path(__file__).resolve().parent / "results" / "nls_probe.json"
SUBS = ("min", "heuristic", "max")


def grid_lr() -> float:
    """The learning rate of the grid's trainings."""
    from shears.train.config import TrainConfig

    return ablation.SCALE["train"].get("lr", TrainConfig.__dataclass_fields__["lr"].default)


def _lr_tag(lr: float) -> str:
    """'' at the grid's learning rate (its folders are reused), else ``_lr<lr>``."""
    return "" if lr == grid_lr() else f"_lr{lr:g}"


def variant(p: float, lr: float) -> str:
    """The folder of an NLS training at max-probability ``p`` and learning rate ``lr`` (the
    grid's own names at its learning rate: ``shears`` for P = 0, the grid's max-prob variant
    else, so that the grid reuses a probe's training)."""
    return ("shears" if p == 0 else ablation.maxp_kind(p)) + _lr_tag(lr)


def plan_cell(pl: ablation.Planner, task: str, sp: float, seed: int, recipe: str,
              probs: list[float], lrs: list[float]) -> dict[str, tuple[str, dict[str, str]]]:  # fmt: skip
    """The steps of one cell: per (probability, learning rate) an NLS training and its validation
    evaluations; per learning rate a LoRA at r_max (the grid's ``lora_pruned``) and its
    validation evaluation. Returns {variant: (training step, {sub-adapter: evaluation step})}."""
    base = pl.prune(sp)
    cell = f"{task}/{recipe}/{ablation._sp(sp)}/seed{seed}"
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for lr in lrs:
        kw_lr = {} if lr == grid_lr() else {"lr": lr}
        for p in probs:
            kind = variant(p, lr)
            kw = {**kw_lr, **({"nls_max_prob": p} if p else {})}
            t = pl.train(f"{cell}/{kind}/train", task, recipe, seed, base, **kw)
            # the grid names the heuristic's validation step eval_val_heuristic: reused
            evals = {s: pl.evaluate(f"{cell}/{kind}/eval_val_{s}", task, base, t, s,
                                    "validation") for s in SUBS}  # fmt: skip
            out[kind] = (t, evals)
        kind = f"lora_pruned{_lr_tag(lr)}"
        t = pl.train(f"{cell}/{kind}/train", task, recipe, seed, base, **kw_lr,
                     space=ablation.lora_space())  # fmt: skip
        out[kind] = (t, {"max": pl.evaluate(f"{cell}/{kind}/eval_val", task, base, t, "max",
                                            "validation")})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="runs/ablation", help="the grid's study folder")
    ap.add_argument("--cells", nargs="+", default=["math:0.4", "mc:0.5"], help="task:sparsity")
    ap.add_argument("--probs", nargs="+", type=float, default=[0.0, 0.5], help="--nls-max-prob")
    ap.add_argument(
        "--lrs", nargs="+", type=float, default=None,
        help="learning rates (of NLS and of the LoRA alike; default: the grid's, 5e-4)",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--result", default=str(RESULT), help="the JSON written")
    a = ap.parse_args(argv)
    a.lrs = a.lrs or [grid_lr()]
    cells = []
    for c in a.cells:
        task, _, sp = c.partition(":")
        if task not in ablation.SCALE["tasks"] or not sp:
            ap.error(f"cell {c!r}: want task:sparsity, task one of {list(ablation.SCALE['tasks'])}")
        cells.append((task, float(sp)))
    if bad := [p for p in a.probs if not 0 <= p < 1]:
        ap.error(f"--probs {bad[0]}: each must be in [0, 1)")
    if bad := [lr for lr in a.lrs if not lr > 0]:
        ap.error(f"--lrs {bad[0]}: each must be > 0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from shears.utils import atomic_write_json

    torch.set_num_threads(a.threads)
    out = Path(a.out).resolve()
    recipes = ablation.choose_recipes(ablation.RESULTS, [t for t, _ in cells])
    result = Path(a.result)
    report: dict = {"settings": {"seed": a.seed, "split": "validation", "scale": ablation.SCALE},
                    "runs": [], "cells": {}}  # fmt: skip
    if result.is_file() and (old := json.loads(result.read_text()))["settings"]["seed"] == a.seed:
        report = old  # accumulate: other variants stay
    report["runs"].append({"probs": a.probs, "lrs": a.lrs, "cells": a.cells})
    for task, sp in cells:
        pl = ablation.Planner(out, "cpu")
        evals = plan_cell(pl, task, sp, a.seed, recipes[task], a.probs, a.lrs)
        steps = [pl.steps[n] for n in pl.steps]  # prune first, then in planning order
        t0 = time.perf_counter()
        ran = ablation.run_unit(out, ablation.Unit(f"nls_probe/{task}", steps))
        logger.info(
            "%s at %s: ran %d steps in %.0f s", task, sp, len(ran), time.perf_counter() - t0
        )
        cell: dict = {}
        for kind, (t, subs) in evals.items():
            cfg = pl.steps[t].cfg
            cell[kind] = {
                "method": "lora" if len(cfg.space.widths) == 1 else "nls",
                "nls_max_prob": cfg.nls_max_prob,
                "lr": cfg.lr,
                "val_accuracy": {s: _accuracy(out / n) for s, n in subs.items()},
                **_losses(out / t),
            }
        report["cells"].setdefault(f"{task} at {round(sp * 100)} %", {}).update(cell)
        atomic_write_json(result, report)
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


logger = logging.getLogger("shears.nls_probe")

if __name__ == "__main__":
    main(sys.argv[1:])
