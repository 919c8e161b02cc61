"""The Shears ablation (paper Table: LoRA on the sparse model < NLS heuristic < RNSGA-II <
hill-climbing, against dense LoRA) on a real model, over sparsities, seeds and two tasks.

For every task, sparsity and seed, with the same data, training budget and search budget:

- ``dense_base`` / ``pruned_base``: the untuned dense and Wanda-pruned models;
- ``lora_dense`` / ``lora_pruned``: LoRA at fixed rank r_max on the dense / pruned model;
- ``shears_heuristic``: NLS super-adapter on the pruned model, heuristic (middle-rank) sub-adapter;
- ``shears_hill_climbing`` / ``shears_evolutionary``: the same super-adapter, sub-adapter found by
  hill-climbing / evolutionary search on the validation answer loss (never the test split).

Every cell (task, sparsity, seed) is a ``shears run`` with baselines (:mod:`shears.pipeline`: its
plan, its steps and their runner), once per search algorithm, with the study's folders. Pruning
does not depend on the training seed: each sparsity is pruned once (calibration seed 0) and shared
by seeds and tasks, like the paper; the untuned bases and the dense LoRA are shared the same way
(one folder, one step). Data seeds are fixed too, so seeds vary only the adapter initialisation,
data order and search.

Work is split into independent units (groups of steps) run by ``--jobs`` worker processes of
``--threads`` torch threads each (2 x 1 beats 1 x 2 on 2 cores). Each unit keeps a ledger of its
steps (``<out>/ledger/``, :mod:`shears.pipeline.ledger`) and reuses what is complete with the same
settings, so a killed study resumes where it stopped. Outputs:

- ``<out>/study_results.json``: per task / sparsity / variant the per-seed accuracies, mean,
  standard error, non-zero parameters; the settings; the compute spent per unit;
- ``<out>/study_table.md`` and ``<out>/study_<task>.png``.

    .venv/bin/python bench/study.py --out runs/study                 # CPU size (2 cores: ~1.7 h)
    .venv/bin/python bench/study.py --scale paper --model huggyllama/llama-7b --out runs/study-7b
    .venv/bin/python bench/study.py --out runs/study --report-only   # re-aggregate
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shears.artifacts import (
    EvalSummary,
    SearchSummary,
    TrainSummary,
    read_search_best,
    read_summary,
)
from shears.pipeline.config import RunConfig
from shears.pipeline.plan import Folders, Step, build_plan, plan_steps

logger = logging.getLogger("shears.study")

# Budgets per scale. "cpu" fits ~1.5 hours of 2 CPU cores for 2 tasks x 2 sparsities x 3 seeds;
# "paper" is the paper's LLaMA-7B math setting (3 epochs, 128 x 2048 C4 calibration, full search),
# for one GPU.
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {
        "model": "smollm2-135m",
        "tasks": {
            "math": {
                "train": "gym:chain_sum?min_terms=2&max_terms=2&max_digits=2",
                "test": "math:gym:chain_sum?min_terms=2&max_terms=2&max_digits=2",
            },
            "mc": {"train": "gym:family_relationships", "test": "mc:gym:family_relationships"},
        },
        "prune": {"nsamples": 32, "seqlen": 256},
        "train": {
            "train_size": 512,
            "max_steps": 40,
            "batch_size": 8,
            "grad_accum": 1,
            "lr": 5e-4,  # the paper's 3e-4 is for ~50x more steps; not tuned
            "warmup": 0.1,
            "cutoff_len": 128,
            "save_steps": 20,
        },
        "search": {"budget": 20, "max_turns": 3, "val_size": 32, "population": 6},
        "eval": {"limit": 200, "max_new_tokens": 16, "batch_size": 32},
    },
    "paper": {
        "model": "huggyllama/llama-7b",
        "tasks": {
            "math": {"train": "gym:gsm_symbolic", "test": "math:gym:gsm_symbolic"},
            "mc": {"train": "gym:family_relationships", "test": "mc:gym:family_relationships"},
        },
        "prune": {
            "nsamples": 128,
            "seqlen": 2048,
            "calibration": "allenai/c4",
            "data_config": "en",
            "data_split": "validation",
        },
        "train": {
            "train_size": 10000,
            "epochs": 3,
            "batch_size": 4,
            "grad_accum": 4,
            "lr": 3e-4,
            "warmup": 100,
            "cutoff_len": 256,
            "save_steps": 200,
            "train_on_inputs": True,
        },
        "search": {"budget": 400, "max_turns": 20, "val_size": 256, "population": 20},
        "eval": {"limit": 1000, "max_new_tokens": 256, "batch_size": 32},
    },
}

PRUNED_VARIANTS = (
    "lora_pruned",
    "shears_heuristic",
    "shears_hill_climbing",
    "shears_evolutionary",
)
VARIANTS = ("dense_base", "lora_dense", "pruned_base", *PRUNED_VARIANTS)
LABELS = {
    "dense_base": "dense base (untuned)",
    "lora_dense": "dense + LoRA (r_max)",
    "pruned_base": "sparse base (untuned)",
    "lora_pruned": "sparse + LoRA (r_max)",
    "shears_heuristic": "Shears, heuristic",
    "shears_hill_climbing": "Shears, hill-climbing",
    "shears_evolutionary": "Shears, evolutionary",
}
VAL_LABELS = {
    "shears_max": "Shears super-adapter, max ranks",
    "shears_min": "Shears super-adapter, min ranks",
}
SEARCHES = {"shears_hill_climbing": "hill-climbing", "shears_evolutionary": "evolutionary"}
# Paired comparisons (a - b on the same seed: same data order and, for Shears, the same
# super-adapter), the paper's ordering read pair by pair.
PAIRS = (
    ("shears_heuristic", "lora_pruned"),
    ("shears_hill_climbing", "shears_heuristic"),
    ("shears_evolutionary", "shears_heuristic"),
    ("shears_hill_climbing", "lora_pruned"),
    ("lora_dense", "shears_hill_climbing"),
)


@dataclass(frozen=True)
class Study:
    """Where everything of one study lives, and its settings."""

    out: Path
    scale: dict[str, Any]
    model: str
    device: str

    def pruned(self, sp: float) -> Path:
        return self.out / "prune" / f"s{round(sp * 100)}"

    def cell(self, task: str, sp: float | None, seed: int | None) -> Path:
        p = self.out / task / ("dense" if sp is None else f"s{round(sp * 100)}")
        return p if seed is None else p / f"seed{seed}"

    def search_dir(self, task: str, sp: float, seed: int, variant: str) -> Path:
        return self.cell(task, sp, seed) / f"search_{variant.removeprefix('shears_')}"

    def eval_dir(self, task: str, sp: float, seed: int | None, variant: str) -> Path:
        """Where ``variant`` is evaluated: the untuned bases once per task (dense) or sparsity,
        the dense LoRA once per seed, the rest once per cell."""
        shared = {"dense_base": (None, None), "pruned_base": (sp, None), "lora_dense": (None, seed)}
        where_sp, where_seed = shared.get(variant, (sp, seed))
        return self.cell(task, where_sp, where_seed) / "eval" / variant

    def folders(self, task: str, sp: float, seed: int, variant: str) -> Folders:
        """Where the steps of the ``shears run`` of one cell and one search (``variant``) write:
        the pruned model, the dense LoRA and the untuned bases are shared between cells."""
        cell = self.cell(task, sp, seed)
        named = {
            "prune": self.pruned(sp),
            "train": cell / "nls",
            "search": self.search_dir(task, sp, seed, variant),
            "train_lora_pruned": cell / "lora_pruned",
            "train_lora_dense": self.cell(task, None, seed) / "lora_dense",
            "eval_shears_searched": self.eval_dir(task, sp, seed, variant),
            "export": cell / "export",  # not run
        }

        def folder(step: str) -> Path:
            return named.get(step) or self.eval_dir(task, sp, seed, step.removeprefix("eval_"))

        return folder

    def run_config(self, task: str, sp: float, seed: int, algorithm: str) -> RunConfig:
        """The ``shears run`` of one cell: Wanda at ``sp`` (calibration seed 0, shared by seeds),
        NLS and LoRA baselines with ``seed``, one search, test evaluation of every variant."""
        scale, device = self.scale, {"device": self.device}
        search = {**scale["search"], "algorithm": algorithm, "objective": "loss", **device}
        if algorithm != "evolutionary":
            search.pop("population", None)
        return RunConfig(
            run_dir=str(self.out),
            model=self.model,
            task=scale["tasks"][task]["train"],
            eval_tasks=[scale["tasks"][task]["test"]],
            seed=seed,
            baselines=True,
            prune={**scale["prune"], "method": "wanda", "sparsity": sp, "seed": 0, **device},
            train={**scale["train"], "space": scale.get("space", {}), **device},
            search=search,
            eval={
                **scale["eval"],
                "seed": 0,
                "prompt_style": "alpaca",
                "progress": False,
                **device,
            },
        )


# ---------------------------------------------------------------------------- units of work


def _unit(step: str, task: str, sp: float, seed: int) -> str | None:
    """The unit of work that runs a step of the cell (``task``, ``sp``, ``seed``); ``None``:
    a step the study does not run (the export)."""
    if step == "export":
        return None
    if step == "prune":
        return _unit_name("prune", (sp,))
    if step == "eval_dense_base":
        return _unit_name("dense_base", (task,))
    if step == "eval_pruned_base":
        return _unit_name("pruned_base", (task, sp))
    if step.endswith("lora_dense"):
        return _unit_name("dense_lora", (task, seed))
    return _unit_name("sparse_cell", (task, sp, seed))


def plan_units(
    st: Study, tasks: list[str], sparsities: list[float], seeds: list[int]
) -> dict[str, list[Step]]:
    """The steps of every unit, built and validated before any work: one ``shears run`` plan per
    cell and search; a step that several plans share (one folder) is kept once, named by its
    folder."""
    units: dict[str, list[Step]] = {}
    digests: dict[str, str] = {}
    for task, sp, seed, variant in itertools.product(tasks, sparsities, seeds, SEARCHES):
        cfg = st.run_config(task, sp, seed, SEARCHES[variant])
        for step in plan_steps(build_plan(cfg, st.folders(task, sp, seed, variant))):
            unit = _unit(step.name, task, sp, seed)
            if unit is None:
                continue
            name = Path(step.cfg.output_dir).relative_to(st.out).as_posix()
            if name in digests:  # shared with an earlier plan: the same step, run once
                if digests[name] != step.digest:
                    raise RuntimeError(f"two different steps would write {name}")
                continue
            digests[name] = step.digest
            units.setdefault(unit, []).append(replace(step, name=name))
    return units


def run_unit_steps(st: Study, unit: str, steps: list[Step]) -> None:
    """Run the steps of one unit that are not up to date; each unit keeps its own ledger (units
    run in parallel processes)."""
    from shears.pipeline.ledger import Ledger
    from shears.pipeline.run import run_steps, step_status

    ledger = Ledger(st.out / "ledger" / f"{unit.replace('/', '_')}.json")
    run_steps(steps, step_status(steps, ledger), ledger, progress=False)


VAL_CHECK_SIZE = 128  # validation examples of the post-hoc loss check (4x the search's)
VAL_FILE = "val_losses.json"


def _val_losses(st: Study, task: str, model: str, adapter: Path, configs: dict) -> dict:
    """Answer-token validation loss of named sub-adapters of one adapter (``configs``: name ->
    config dict or a named config: heuristic / max / min)."""
    from shears.adapters.io import SuperAdapter
    from shears.models import load_model
    from shears.search import AnswerLossObjective, encode_validation
    from shears.search.data import load_validation_examples

    examples = load_validation_examples(
        {
            "data": st.scale["tasks"][task]["train"],
            "data_split": "validation",
            "val_size": VAL_CHECK_SIZE,
            "data_seed": 0,
        },
        ("output",),
    )
    m, tok = load_model(model, "auto", st.device)
    loaded = SuperAdapter.load(m, adapter, dropout=0.0)
    layers, space = loaded.layers, loaded.space
    m.eval()
    batches = encode_validation(tok, examples, "alpaca", st.scale["train"]["cutoff_len"], 8)
    obj = AnswerLossObjective(m, layers, space, batches, reuse_prefix=False)
    out = {}
    for name, cfg in configs.items():
        cfg = space.named_config(cfg) if isinstance(cfg, str) else cfg
        out[name] = {"loss": obj(cfg), "adapter_parameters": space.adapter_parameters(cfg)}
    return out


def unit_val_check(st: Study, task: str, sp: float, seed: int) -> None:
    """Post-hoc: validation loss (128 examples, never the test split) of every adapter of a
    cell, to tell a training shortfall (NLS sub-adapters vs LoRA) from a search or test effect."""
    from shears.utils import atomic_write_json

    cell, dense = st.cell(task, sp, seed), st.cell(task, None, seed)
    if (cell / VAL_FILE).is_file():
        return
    best = {}
    for variant in SEARCHES:
        best[variant] = read_search_best(st.search_dir(task, sp, seed, variant)).config
    nls = {"shears_max": "max", "shears_heuristic": "heuristic", "shears_min": "min", **best}
    res = {
        **_val_losses(st, task, str(st.pruned(sp)), cell / "nls", nls),
        **_val_losses(st, task, str(st.pruned(sp)), cell / "lora_pruned", {"lora_pruned": "max"}),
        **_val_losses(st, task, st.model, dense / "lora_dense", {"lora_dense": "max"}),
        "val_examples": VAL_CHECK_SIZE,
    }
    atomic_write_json(cell / VAL_FILE, res)


def _die_with_parent() -> None:
    """Linux: have the kernel stop this worker when the study process dies (a killed study
    leaves no orphan still writing into its folders). Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import contextlib
        import ctypes
        import signal

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker_init(threads: int) -> None:
    import torch

    _die_with_parent()
    torch.set_num_threads(threads)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s", force=True
    )
    for noisy in ("transformers", "datasets", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _run_unit(st: Study, kind: str, args: tuple, steps: list[Step]) -> tuple[str, tuple, float]:
    t0 = time.perf_counter()
    if kind == "val_check":
        unit_val_check(st, *args)
    else:
        run_unit_steps(st, _unit_name(kind, args), steps)
    return kind, args, time.perf_counter() - t0


def _unit_name(kind: str, args: tuple) -> str:
    return "/".join([kind, *map(str, args)])


def run_units(
    st: Study,
    units: list[tuple[str, tuple]],
    steps: dict[str, list[Step]],
    jobs: int,
    threads: int,
) -> None:
    """Run ``units`` (their ``steps``: :func:`plan_units`) on ``jobs`` worker processes; record
    wall seconds per unit in unit_times."""
    from tqdm.auto import tqdm

    from shears.utils import atomic_write_json

    times_path = st.out / "unit_times.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    bar = tqdm(total=len(units), desc="study units", unit="unit")

    def record(kind: str, args: tuple, secs: float) -> None:
        name = _unit_name(kind, args)
        if secs > times.get(name, {}).get("wall_s", 0.0):  # a skipped (complete) unit is fast:
            times[name] = {"wall_s": round(secs, 1), "threads": threads}  # keep the real time
        atomic_write_json(times_path, times)
        bar.update(1)
        logger.info("unit %s done in %.0f s", name, secs)

    if jobs == 1:
        _worker_init(threads)
        for kind, args in units:
            record(*_run_unit(st, kind, args, steps.get(_unit_name(kind, args), [])))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(jobs, ctx, _worker_init, (threads,)) as pool:
            futures = [
                pool.submit(_run_unit, st, kind, args, steps.get(_unit_name(kind, args), []))
                for kind, args in units
            ]
            for fut in as_completed(futures):
                record(*fut.result())
    bar.close()


# ---------------------------------------------------------------------------- aggregation


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = sum(values) / n if n else None
    if n > 1:
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        stderr = math.sqrt(var / n)
    else:
        stderr = None
    return {"mean": mean, "stderr": stderr, "n": n, "values": values}


def _search_summary(res: SearchSummary | None) -> dict[str, Any] | None:
    """Validation loss of the start (first evaluated: the heuristic for hill-climbing) and best."""
    if res is None:
        return None
    return {
        "start_loss": res.first_score,
        "best_loss": (res.best or {}).get("score"),
        "best_config": (res.best or {}).get("config"),
        "evaluations": res.evaluations,
        "time_s": res.time_s,
    }


def _variant_row(st: Study, task: str, sp: float, seeds: list[int], variant: str) -> dict:
    """One variant of one task and sparsity: per-seed accuracy, mean +- stderr, non-zeros."""
    accs, nonzero, per_seed = [], [], {}
    for seed in seeds if variant not in ("dense_base", "pruned_base") else [None]:
        res = read_summary(st.eval_dir(task, sp, seed, variant), EvalSummary)
        if res is None or res.mean_accuracy is None:
            continue
        accs.append(res.mean_accuracy)
        nonzero.append(res.nonzero_parameters)
        per_seed[str(seed)] = {"accuracy": res.mean_accuracy, "sub_adapter": res.sub_adapter_config}
    return {
        "label": LABELS[variant],
        "accuracy": _stats(accs),
        "nonzero_parameters": nonzero[0] if nonzero else None,
        "per_seed": per_seed,
    }


def _seed_runs(st: Study, task: str, sp: float, seed: int) -> dict:
    """The validation losses, training losses and searches of one cell."""
    cell = st.cell(task, sp, seed)
    train = {k: read_summary(cell / k, TrainSummary) for k in ("nls", "lora_pruned")}
    searches = {v: read_summary(st.search_dir(task, sp, seed, v), SearchSummary) for v in SEARCHES}
    return {
        "val_losses": _read(cell / VAL_FILE),
        "final_train_loss": {
            k: (t.train_loss or t.final_loss) if t else None for k, t in train.items()
        },
        "search": {v: _search_summary(s) for v, s in searches.items()},
    }


def _paired(rows: dict) -> dict:
    """Paired differences (same seed) of the ``PAIRS``."""
    paired = {}
    for a, b in PAIRS:
        common = sorted(set(rows[a]["per_seed"]) & set(rows[b]["per_seed"]))
        diffs = [
            rows[a]["per_seed"][k]["accuracy"] - rows[b]["per_seed"][k]["accuracy"] for k in common
        ]
        paired[f"{a} - {b}"] = _stats(diffs)
    return paired


def _val_loss(runs: dict) -> dict:
    """Validation loss over seeds of every adapter of the post-hoc check."""
    names = ("shears_max", "shears_heuristic", "shears_min", *SEARCHES, "lora_pruned")
    return {
        name: _stats(
            [
                e["val_losses"][name]["loss"]
                for e in runs.values()
                if e["val_losses"] and name in e["val_losses"]
            ]
        )
        for name in (*names, "lora_dense")
    }


def collect(st: Study, tasks: list[str], sparsities: list[float], seeds: list[int]) -> dict:
    """Per task, sparsity and variant: per-seed accuracy, mean +- stderr, non-zero parameters."""
    table: dict[str, Any] = {}
    for task in tasks:
        table[task] = {}
        for sp in sparsities:
            rows = {v: _variant_row(st, task, sp, seeds, v) for v in VARIANTS}
            runs = {str(seed): _seed_runs(st, task, sp, seed) for seed in seeds}
            table[task][f"{round(sp * 100)}"] = {
                "variants": rows,
                "val_loss": _val_loss(runs),
                "paired_differences": _paired(rows),
                "per_seed_runs": runs,
            }
    return table


def render_table(results: dict, tasks: list[str], sparsities: list[float]) -> str:
    """Markdown: one table per task, variants x sparsities, accuracy mean +- stderr (n seeds)."""
    lines = []
    for task in tasks:
        spec = results["settings"]["scale"]["tasks"][task]
        lines += [f"### {task}: `{spec['test']}`", ""]
        head = "| variant | " + " | ".join(f"{round(s * 100)} % sparsity" for s in sparsities)
        lines += [head + " |", "|---|" + "---|" * len(sparsities)]
        for variant in VARIANTS:
            cells = []
            for sp in sparsities:
                row = results["table"][task][f"{round(sp * 100)}"]["variants"][variant]
                a = row["accuracy"]
                if a["mean"] is None:
                    cells.append("n/a")
                elif a["stderr"] is None:
                    cells.append(f"{100 * a['mean']:.1f} (n={a['n']})")
                else:
                    cells.append(f"{100 * a['mean']:.1f} ± {100 * a['stderr']:.1f} (n={a['n']})")
            lines.append(f"| {LABELS[variant]} | " + " | ".join(cells) + " |")
        lines += ["", "Paired differences (same seed), accuracy points:", ""]
        lines += [head.replace("variant", "a - b") + " |", "|---|" + "---|" * len(sparsities)]
        for a, b in PAIRS:
            cells = []
            for sp in sparsities:
                d = results["table"][task][f"{round(sp * 100)}"]["paired_differences"][f"{a} - {b}"]
                if d["mean"] is None:
                    cells.append("n/a")
                else:
                    err = "" if d["stderr"] is None else f" ± {100 * d['stderr']:.1f}"
                    cells.append(f"{100 * d['mean']:+.1f}{err} (n={d['n']})")
            lines.append(f"| {LABELS[a]} − {LABELS[b]} | " + " | ".join(cells) + " |")
        lines += ["", "Validation answer loss (post-hoc check, lower is better):", ""]
        lines += [head.replace("variant", "adapter") + " |", "|---|" + "---|" * len(sparsities)]
        for name in results["table"][task][f"{round(sparsities[0] * 100)}"]["val_loss"]:
            cells = []
            for sp in sparsities:
                v = results["table"][task][f"{round(sp * 100)}"]["val_loss"][name]
                if v["mean"] is None:
                    cells.append("n/a")
                else:
                    err = "" if v["stderr"] is None else f" ± {v['stderr']:.4f}"
                    cells.append(f"{v['mean']:.4f}{err} (n={v['n']})")
            lines.append(
                f"| {VAL_LABELS.get(name, LABELS.get(name, name))} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, tasks: list[str], sparsities: list[float], out: Path) -> list[str]:
    """One PNG per task: grouped bars (variants) per sparsity, error bars = stderr over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    colors = plt.get_cmap("tab10").colors
    for task in tasks:
        fig, ax = plt.subplots(figsize=(8, 4))
        width = 0.8 / len(VARIANTS)
        for j, variant in enumerate(VARIANTS):
            means, errs = [], []
            for sp in sparsities:
                a = results["table"][task][f"{round(sp * 100)}"]["variants"][variant]["accuracy"]
                means.append(100 * (a["mean"] or 0.0))
                errs.append(100 * (a["stderr"] or 0.0))
            xs = [i + (j - (len(VARIANTS) - 1) / 2) * width for i in range(len(sparsities))]
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=LABELS[variant], color=colors[j])
        ax.set_xticks(range(len(sparsities)), [f"{round(s * 100)} % sparsity" for s in sparsities])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: {results['settings']['scale']['tasks'][task]['test']}", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = out / f"study_{task}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=120)
        plt.close(fig)
        tmp.replace(path)
        files.append(str(path))
    return files


# ---------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="runs/study", help="study folder (resumed when it exists)")
    p.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="budgets (see SCALES)")
    p.add_argument("--model", default=None, help="base model (default: the scale's)")
    p.add_argument(
        "--tasks", nargs="+", default=["math", "mc"], help="tasks of the scale to run: math, mc"
    )
    p.add_argument(
        "--sparsities",
        nargs="+",
        type=float,
        default=[0.4, 0.5],
        help="Wanda sparsities, each in (0, 1)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="training seeds (adapter init, data order, search)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="worker processes (default: 2 at cpu scale, 1 at paper scale: one GPU per unit)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads per worker (2 workers x 1 thread beats 1 x 2 on 2 cores)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--report-only", action="store_true", help="only aggregate what exists")
    args = p.parse_args(argv)
    bad = [t for t in args.tasks if t not in SCALES[args.scale]["tasks"]]
    if bad:
        p.error(f"unknown task {bad[0]!r}; allowed: {', '.join(SCALES[args.scale]['tasks'])}")
    bad_sp = [s for s in args.sparsities if not 0.0 < s < 1.0]
    if bad_sp:
        p.error(f"--sparsities must lie in (0, 1), got {bad_sp[0]}")
    if args.jobs is None:
        args.jobs = 2 if args.scale == "cpu" else 1
    if args.jobs < 1 or args.threads < 1:
        p.error(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    return args


def run_study(st: Study, args: argparse.Namespace) -> None:
    """Every unit, in three waves: pruning and the dense base; then the rest, seed by seed (an
    interrupted study has whole seeds); then the validation checks."""
    steps = plan_units(st, args.tasks, args.sparsities, args.seeds)  # every config checked first
    t0 = time.perf_counter()
    first = [("prune", (sp,)) for sp in args.sparsities]
    first += [("dense_base", (t,)) for t in args.tasks]
    run_units(st, first, steps, args.jobs, args.threads)
    rest = [("pruned_base", (t, sp)) for t in args.tasks for sp in args.sparsities]
    for seed in args.seeds:
        rest += [("sparse_cell", (t, sp, seed)) for t in args.tasks for sp in args.sparsities]
        rest += [("dense_lora", (t, seed)) for t in args.tasks]
    run_units(st, rest, steps, args.jobs, args.threads)
    cells = itertools.product(args.seeds, args.tasks, args.sparsities)
    checks = [("val_check", (t, sp, seed)) for seed, t, sp in cells]
    run_units(st, checks, steps, args.jobs, args.threads)
    logger.info("study done in %.0f s wall", time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    scale = SCALES[args.scale]
    st = Study(out, scale, args.model or scale["model"], args.device)
    settings = {
        "scale_name": args.scale,
        "scale": scale,
        "model": st.model,
        "tasks": args.tasks,
        "sparsities": args.sparsities,
        "seeds": args.seeds,
        "jobs": args.jobs,
        "threads": args.threads,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    from shears.utils import atomic_write_json, atomic_write_text

    saved = out / "study_config.json"
    if saved.is_file() and not args.report_only:
        old = json.loads(saved.read_text())
        if old["scale"] != json.loads(json.dumps(scale)) or old["model"] != st.model:
            raise SystemExit(f"{saved} holds another study (scale/model differ); use another --out")
    if not args.report_only:
        atomic_write_json(saved, settings)
        run_study(st, args)
    times = _read(out / "unit_times.json") or {}
    results = {
        "settings": settings,
        "table": collect(st, args.tasks, args.sparsities, args.seeds),
        "compute": {
            "unit_wall_s": times,
            "total_core_s": round(sum(v["wall_s"] * v["threads"] for v in times.values()), 1),
        },
    }
    atomic_write_json(out / "study_results.json", results)
    atomic_write_text(out / "study_table.md", render_table(results, args.tasks, args.sparsities))
    results["plots"] = plot(results, args.tasks, args.sparsities, out)
    atomic_write_json(out / "study_results.json", results)
    print(render_table(results, args.tasks, args.sparsities))
    return results


if __name__ == "__main__":
    main()
