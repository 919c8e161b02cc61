"""The Shears ablation at the paper's training budget (issue 15), resumable by unit.

Every adapter trains for 2.5 epochs of its training split (the paper trains 3). Per task, Wanda
sparsity and seed, with the same data, budget and search:

- ``lora_dense`` / ``lora_pruned``: LoRA at r_max on the dense / pruned model;
- ``shears_heuristic`` / ``shears_hill_climbing``: the NLS super-adapter on the pruned model, the
  heuristic sub-adapter and the one hill-climbing finds on the validation answer loss;
- ``distill_heuristic`` / ``distill_hill_climbing``: the same, trained with ``--distill`` from the
  fine-tuned dense teacher: the dense model with the same seed's ``lora_dense`` adapter merged
  (``--teacher-adapter``; logit KD, w 0.5, T 2). A first unit distilled from the untuned dense
  model, which cannot do the task (3.5 % on math): it fell 15 points below plain Shears, so the
  grid switched to the tuned teacher (that unit's summary is kept in ``untuned_teacher/``);
- ``nls_maxp50_heuristic`` / ``nls_maxp50_hill_climbing``: NLS whose optimizer steps train the
  maximal sub-adapter with probability 0.5 (``--nls-max-prob 0.5``), else the paper's uniform
  sample (added 2026-11-30 after a validation-only probe, bench/nls_probe.py);
- on one cell (``--extras``): ``lora_pruned_distill`` (sparse LoRA + distill), ``owl_heuristic`` /
  ``owl_hill_climbing`` (Shears on the OWL-pruned base) and the adapter-size Pareto front: the
  super-adapter's min / heuristic / max sub-adapters and hill-climbing under two adapter-parameter
  budgets, against fixed-rank LoRAs r = 16, 24 (and 32 = ``lora_pruned``) trained separately.

The training recipe is checked first, on the validation split only (``recipe`` phase): loss on
prompt + answer (``pa``, the paper's) against the answer only (``ao``), NLS at seed 0 on one cell
per task; the recipe with the higher validation accuracy of the heuristic sub-adapter is used for
the whole grid of that task (a tie keeps the paper's).

Work is split into units (a training and what reads it: its searches and evaluations). Every step
has its own ledger (``<out>/ledger/``), so a killed study resumes inside a unit; a finished unit
writes a small summary to ``--results`` (committed), and a unit whose summary is there with the
same settings is not run again, on any machine: the study continues across sessions. Units run on
``--jobs`` processes of ``--threads`` torch threads, in priority order (seed 0 of every cell, then
the extras, then seeds 1 and 2), each once the units it reads from are done.

    .venv/bin/python bench/ablation.py --out runs/ablation            # the whole grid (~20 core-h)
    .venv/bin/python bench/ablation.py --out runs/ablation --seeds 0   # seed 0 of every cell
    .venv/bin/python bench/ablation.py --out runs/ablation --dry-run   # what is done, what is left
    .venv/bin/python bench/ablation_report.py                          # tables, plots, JSON
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

logger = logging.getLogger("shears.ablation")

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "ablation"

SCALE: dict[str, Any] = {
    "model": "smollm2-135m",
    "tasks": {
        "math": {"kind": "math", "gym": "chain_sum?min_terms=2&max_terms=2&max_digits=2"},
        "mc": {"kind": "mc", "gym": "family_relationships"},
    },
    "prune": {"method": "wanda", "nsamples": 32, "seqlen": 256, "seed": 0},
    "owl": {"sparsity_profile": "owl"},  # OWL paper defaults for M and lambda
    "train": {
        "train_size": 512,
        "max_steps": 160,  # 2.5 epochs of 512 examples at batch 8
        "batch_size": 8,
        "grad_accum": 1,
        "lr": 5e-4,
        "warmup": 0.1,
        "cutoff_len": 128,
        "save_steps": 40,
        "data_seed": 0,
    },
    "space": {"widths": [32, 24, 16]},
    "distill": {"distill": True, "distill_weight": 0.5, "distill_temperature": 2.0},
    "nls_max_prob": 0.5,  # the NLS variant whose steps are the maximal sub-adapter half the time
    "search": {
        "algorithm": "hill-climbing",
        "objective": "loss",
        "budget": 20,
        "max_turns": 3,
        "val_size": 32,
        "data_seed": 0,
    },
    "eval": {"limit": 200, "max_new_tokens": 16, "batch_size": 32, "seed": 0, "progress": False},
    "sparsities": [0.4, 0.5],
    "val_limit": 100,  # validation examples of the recipe check and per-variant val accuracy
    "pareto_ranks": [16, 24],  # fixed-rank LoRAs besides r_max
    # hill-climbing budgets of the Pareto front, as sub-adapters: {module kind: rank}
    "pareto_budgets": {
        "b60": {"qkv": 24, "up": 16, "down": 16},
        "b85": {"qkv": 32, "up": 24, "down": 24},
    },
    "extras_cell": ["mc", 0.5],  # the largest Shears-LoRA gap of the 40-step study
    "recipe_cells": {"math": 0.4, "mc": 0.5},
}
RECIPES = {"pa": True, "ao": False}  # train_on_inputs
# Compute precision of every step: full fp32, what ``auto`` meant on a CPU when the study began.
# Applied after the digest (a setting its units never recorded), so that a later change of
# ``auto`` (shears.precision) cannot mix precisions within the grid.
PINNED = {"precision": "fp32"}


@dataclass
class Step:
    """One stage run: ``kind`` (prune | train | search | eval), its config, its digest."""

    name: str  # the folder, relative to the study folder
    kind: str
    cfg: Any
    digest: str
    reads: list[str]  # the steps whose output it reads


@dataclass
class Unit:
    """A training and what reads it. ``deps``: the steps of other units that its steps read
    (run again only when their output is missing: a study continued on another machine);
    ``needs``: the units owning them."""

    name: str
    steps: list[Step] = field(default_factory=list)
    deps: list[Step] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        text = json.dumps([s.digest for s in self.steps])
        return hashlib.sha1(text.encode()).hexdigest()[:16]


def _sp(sp: float) -> str:
    return f"s{round(sp * 100)}"


class Planner:
    """Builds every step and unit of the study (configs validated before any work)."""

    def __init__(self, out: Path, device: str) -> None:
        self.out, self.device = out, device
        self.steps: dict[str, Step] = {}
        self.units: dict[str, Unit] = {}
        self.owner: dict[str, str] = {}  # step name -> unit name

    # -------------------------------------------------------------- steps
    def _step(self, name: str, kind: str, data: dict, reads: list[str]) -> Step:
        from shears.config import from_dict
        from shears.evaluate.config import EvalConfig
        from shears.pipeline.ledger import stage_digest
        from shears.prune.config import PruneConfig
        from shears.search.config import SearchConfig
        from shears.train.config import TrainConfig

        cls = {"prune": PruneConfig, "train": TrainConfig, "search": SearchConfig}.get(
            kind, EvalConfig
        )
        cfg = from_dict(cls, {**data, "output_dir": str(self.out / name), "device": self.device})
        digest = stage_digest(cfg, [self.steps[r].digest for r in reads])
        pins = {k: v for k, v in PINNED.items() if k in {f.name for f in fields(cfg)}}
        cfg = replace(cfg, **pins)
        if name in self.steps and self.steps[name].digest != digest:
            raise RuntimeError(f"two different steps would write {name}")
        self.steps[name] = Step(name, kind, cfg, digest, list(reads))
        return self.steps[name]

    def prune(self, sp: float, owl: bool = False) -> str:
        name = f"prune/{'owl_' if owl else ''}{_sp(sp)}"
        data = {**SCALE["prune"], **(SCALE["owl"] if owl else {}), "sparsity": sp}
        self._step(name, "prune", {**data, "model": SCALE["model"]}, [])
        return name

    def train(self, name: str, task: str, recipe: str, seed: int, base: str | None,
              reads: tuple = (), **kw) -> str:  # fmt: skip
        """A training on the pruned ``base`` step (None: the dense model); ``reads``: other
        steps it reads (a teacher adapter); ``kw``: overrides."""
        data = {
            **SCALE["train"],
            "space": SCALE["space"],
            "data": f"gym:{SCALE['tasks'][task]['gym']}",
            "train_on_inputs": RECIPES[recipe],
            "seed": seed,
            "model": str(self.out / base) if base else SCALE["model"],
            **kw,
        }
        self._step(name, "train", data, [*([base] if base else []), *reads])
        return name

    def search(self, name: str, train: str, base: str, seed: int, **kw) -> str:
        data = {
            **SCALE["search"],
            "adapter": str(self.out / train),
            "model": str(self.out / base),
            "seed": seed,
            **kw,
        }
        self._step(name, "search", data, [train])
        return name

    def evaluate(self, name: str, task: str, model: str | None, adapter: str | None,
                 sub: str = "heuristic", split: str = "test", reads: tuple = ()) -> str:  # fmt: skip
        """Accuracy of ``model`` (a step, None: the dense model) with ``adapter`` (a step) at
        ``sub`` (a named sub-adapter or a search step) on the ``split`` of ``task``."""
        from shears.artifacts import SEARCH_RESULTS

        spec = SCALE["tasks"][task]
        limit = SCALE["eval"]["limit"] if split == "test" else SCALE["val_limit"]
        tspec = {"kind": spec["kind"], "source": "gym", "path": spec["gym"], "split": split}
        data = {**SCALE["eval"], "limit": limit, "tasks": [{**tspec, "name": f"{task}_{split}"}]}
        data["model"] = str(self.out / model) if model else SCALE["model"]
        data["prompt_style"] = "alpaca"
        if adapter:
            data["adapter"] = str(self.out / adapter)
        named = sub in ("heuristic", "max", "min")
        data["sub_adapter"] = sub if named else str(self.out / sub / SEARCH_RESULTS)
        upstream = [r for r in (model, adapter, *reads) if r]
        self._step(name, "eval", data, upstream)
        return name

    # -------------------------------------------------------------- units
    def unit(self, name: str, steps: list[str]) -> Unit:
        """A unit of ``steps``; a step already owned by an earlier unit stays that unit's (this
        one then reads it); the steps they read from other units become its ``deps``."""
        own = [s for s in steps if self.owner.setdefault(s, name) == name]
        deps: list[str] = []

        def visit(s: str) -> None:
            for r in self.steps[s].reads:
                visit(r)
            if s not in own and s not in deps:
                deps.append(s)

        for s in steps:
            visit(s)
        needs = sorted({self.owner[d] for d in deps})
        u = Unit(name, [self.steps[s] for s in own], [self.steps[d] for d in deps], needs)
        self.units[name] = u
        return u


def pareto_start(model: str, rank_of: dict[str, int]) -> tuple[dict[str, int], int]:
    """A sub-adapter giving each group the rank of its kind (``qkv`` / ``up`` / ``down``), and
    its adapter parameters."""
    from shears.adapters.config import ElasticLoraConfig, SpaceConfig
    from shears.adapters.search_space import SearchSpace
    from shears.models import model_skeleton

    space = SearchSpace.build(
        model_skeleton(model), ElasticLoraConfig(), SpaceConfig(**SCALE["space"])
    )
    kinds = {
        "q_proj": "qkv",
        "k_proj": "qkv",
        "v_proj": "qkv",
        "up_proj": "up",
        "down_proj": "down",
    }
    out = {g.name: rank_of[kinds[g.modules[0].rsplit(".", 1)[-1]]] for g in space.groups}
    return out, space.adapter_parameters(out)


def maxp_kind(p: float) -> str:
    """The folder of the NLS variant trained with ``--nls-max-prob p`` (bench/nls_probe.py
    names its probes the same, so the grid reuses a probe's training)."""
    return f"nls_maxp{round(p * 100)}"


def lora_space(rank: int | None = None) -> dict[str, Any]:
    """The search space of a fixed-rank LoRA: the grid's, with the one width ``rank`` (None:
    r_max)."""
    return {**SCALE["space"], "widths": [rank or max(SCALE["space"]["widths"])]}


def dense_lora(task: str, recipe: str, seed: int) -> str:
    """The training step of the dense LoRA of ``task`` / ``recipe`` / ``seed``."""
    return f"{task}/{recipe}/dense/seed{seed}/lora_dense/train"


def cell_units(p: Planner, task: str, sp: float, seed: int, recipe: str, part: str) -> None:
    """The units of one (task, sparsity, seed) cell: ``part`` core (sparse LoRA, Shears, Shears +
    distill) or extras (sparse LoRA + distill, Shears on OWL, the Pareto front)."""
    base = p.prune(sp)
    cell = f"{task}/{recipe}/{_sp(sp)}/seed{seed}"

    teacher = dense_lora(task, recipe, seed)  # the fine-tuned dense teacher of distillation
    distill = {**SCALE["distill"], "teacher_adapter": str(p.out / teacher), "reads": (teacher,)}

    def nls_unit(kind: str, base: str, **kw) -> None:
        t = p.train(f"{cell}/{kind}/train", task, recipe, seed, base, **kw)
        steps = [t]
        steps.append(
            p.evaluate(f"{cell}/{kind}/eval_val_heuristic", task, base, t, split="validation")
        )
        steps.append(p.evaluate(f"{cell}/{kind}/eval_heuristic", task, base, t))
        s = p.search(f"{cell}/{kind}/search_hc", t, base, seed)
        steps += [s, p.evaluate(f"{cell}/{kind}/eval_hill_climbing", task, base, t, s, reads=(s,))]
        p.unit(f"{kind}/{cell}", steps)

    def lora_unit(kind: str, base: str | None, rank: int | None = None, **kw) -> None:
        t = p.train(f"{cell}/{kind}/train", task, recipe, seed, base, space=lora_space(rank), **kw)
        steps = [t, p.evaluate(f"{cell}/{kind}/eval_val", task, base, t, "max", "validation")]
        steps.append(p.evaluate(f"{cell}/{kind}/eval", task, base, t, "max"))
        p.unit(f"{kind}/{cell}", steps)

    if part == "core":
        lora_unit("lora_pruned", base)
        nls_unit("shears", base)
        nls_unit("distill", base, **distill)
        maxp = SCALE["nls_max_prob"]
        nls_unit(maxp_kind(maxp), base, nls_max_prob=maxp)
        return
    lora_unit("lora_pruned_distill", base, **distill)
    nls_unit("owl", p.prune(sp, owl=True))
    for r in SCALE["pareto_ranks"]:
        lora_unit(f"lora_r{r}", base, rank=r)
    # the Pareto front of the super-adapter: min, max and searches under two budgets
    t = f"{cell}/shears/train"
    steps = [p.evaluate(f"{cell}/pareto/eval_{n}", task, base, t, n) for n in ("min", "max")]
    for bname, ranks in SCALE["pareto_budgets"].items():
        start, params = pareto_start(SCALE["model"], ranks)
        s = p.search(
            f"{cell}/pareto/search_{bname}",
            t,
            base,
            seed,
            start=json.dumps(start),
            max_params=params,
        )
        steps += [s, p.evaluate(f"{cell}/pareto/eval_{bname}", task, base, t, s, reads=(s,))]
    p.unit(f"pareto/{cell}", steps)


def plan(out: Path, device: str, seeds: list[int], recipes: dict[str, str]) -> Planner:
    """Every unit, in priority order: pruning and the untuned bases; the recipe check; then per
    seed the core of every cell (the recipe-check cells first, each task's dense LoRA before its
    first cell), then the extras cell."""
    p = Planner(out, device)
    sparsities = SCALE["sparsities"]
    for sp in sparsities:
        p.unit(f"prune/{_sp(sp)}", [p.prune(sp)])
    ex_task, ex_sp = SCALE["extras_cell"]
    p.unit(f"prune/owl_{_sp(ex_sp)}", [p.prune(ex_sp, owl=True)])
    for task in SCALE["tasks"]:
        steps = [p.evaluate(f"{task}/bases/dense", task, None, None)]
        steps += [
            p.evaluate(f"{task}/bases/{_sp(sp)}", task, p.prune(sp), None) for sp in sparsities
        ]
        steps.append(p.evaluate(f"{task}/bases/owl_{_sp(ex_sp)}", task, p.prune(ex_sp, True), None))
        p.unit(f"bases/{task}", steps)
    for task, sp in SCALE["recipe_cells"].items():  # the recipe check: NLS, seed 0, both recipes
        for recipe in RECIPES:
            cell = f"{task}/{recipe}/{_sp(sp)}/seed0"
            t = p.train(f"{cell}/shears/train", task, recipe, 0, p.prune(sp))
            ev = p.evaluate(
                f"{cell}/shears/eval_val_heuristic", task, p.prune(sp), t, split="validation"
            )
            p.unit(f"recipe/{task}/{recipe}", [t, ev])
    first = list(SCALE["recipe_cells"].items())
    cells = first + [(t, sp) for t in recipes for sp in sparsities if (t, sp) not in first]
    for seed in seeds:
        for task, sp in cells:
            if task not in recipes:
                continue
            recipe = recipes[task]
            t = dense_lora(task, recipe, seed)
            d = t.rsplit("/", 1)[0]
            if f"lora_dense/{task}/{recipe}/seed{seed}" not in p.units:
                p.train(t, task, recipe, seed, None, space=lora_space())
                ev = [p.evaluate(f"{d}/eval_val", task, None, t, "max", "validation")]
                ev.append(p.evaluate(f"{d}/eval", task, None, t, "max"))
                p.unit(f"lora_dense/{task}/{recipe}/seed{seed}", [t, *ev])
            cell_units(p, task, sp, seed, recipe, "core")
        if ex_task in recipes:
            cell_units(p, ex_task, ex_sp, seed, recipes[ex_task], "extras")
    return p


# ---------------------------------------------------------------------------- running


def _ledger(out: Path, step: Step):
    from shears.pipeline.ledger import Ledger

    return Ledger(out / "ledger" / (step.name.replace("/", "__") + ".json"))


def run_unit(out: Path, unit: Unit) -> dict[str, Any]:
    """Run the steps of ``unit`` (and of the units it reads, where missing) that are not up to
    date; each step has its own ledger. Returns the wall seconds per step run."""
    from shears.pipeline.run import run_step

    times: dict[str, float] = {}
    for st in [*unit.deps, *unit.steps]:
        ledger = _ledger(out, st)
        status = ledger.status(st.name, st.digest, _complete(st))
        if status == "reuse":
            continue
        ledger.mark(st.name, st.digest, False)
        t0 = time.perf_counter()
        run_step(st, status, progress=False)  # type: ignore[arg-type]
        times[st.name] = round(time.perf_counter() - t0, 1)
        ledger.mark(st.name, st.digest, True)
    return times


def _complete(st: Step) -> bool:
    from shears.artifacts import complete

    return complete(st.cfg.output_dir, st.kind)


def summarize(out: Path, unit: Unit, times: dict[str, float], threads: int) -> dict[str, Any]:
    """What the report needs from a finished unit (accuracies, losses, searches, sizes)."""
    from shears.artifacts import EvalSummary, SearchSummary, TrainSummary, read_summary

    steps: dict[str, Any] = {}
    for st in unit.steps:
        folder = out / st.name
        if st.kind == "eval":
            r = read_summary(folder, EvalSummary)
            named = r.sub_adapter in ("heuristic", "max", "min")
            steps[st.name] = {
                "accuracy": r.mean_accuracy,
                "nonzero_parameters": r.nonzero_parameters,
                "adapter_parameters": r.adapter_parameters,
                "sub_adapter": r.sub_adapter,
                "sub_adapter_config": None if named else r.sub_adapter_config,
                "correct": outcome_bits(folder),
            }
        elif st.kind == "train":
            r = read_summary(folder, TrainSummary)
            steps[st.name] = {
                "train_loss": r.train_loss,
                "final_loss": r.final_loss,
                "global_steps": r.global_steps,
                "train_runtime_s": r.train_runtime_s,
                "adapter_parameters": r.adapter_parameters,
            }
            extra = json.loads((folder / "train_results.json").read_text())
            steps[st.name]["loss_terms"] = extra.get("distill")
            steps[st.name]["steps_run"] = steps_run(extra)
        elif st.kind == "prune":
            rep = json.loads((folder / "prune_report.json").read_text())
            keys = ("sparsity", "sparsity_profile", "model_parameters", "seconds")
            steps[st.name] = {k: rep.get(k) for k in keys}
        elif st.kind == "search":
            r = read_summary(folder, SearchSummary)
            steps[st.name] = {
                "start_loss": r.first_score,
                "best": r.best,
                "evaluations": r.evaluations,
                "stop_reason": r.stop_reason,
                "time_s": r.time_s,
            }
    return {
        "unit": unit.name,
        "digest": unit.digest,
        "steps": steps,
        "wall_s": times,
        "threads": threads,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def outcome_bits(folder: Path) -> str | None:
    """Per-problem correctness of an eval step in ``folder``: one character per problem, in
    (task, index) order, ``"1"`` right and ``"0"`` wrong; ``None`` without predictions.jsonl.
    The report pools these over seeds for a problem-by-problem paired comparison."""
    from shears.artifacts import EVAL_PREDICTIONS

    f = folder / EVAL_PREDICTIONS
    if not f.is_file():
        return None
    recs = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    recs.sort(key=lambda r: (r["task"], r["index"]))
    return "".join("1" if r["correct"] else "0" for r in recs)


def steps_run(train_results: dict) -> int | None:
    """Optimizer steps the last training process ran: all of them, or those after the
    checkpoint it resumed from (``train_runtime_s`` times only these); ``None`` if unknown."""
    from shears.train.folder import checkpoint_step

    total, resumed = train_results.get("global_steps"), train_results.get("resumed_from")
    if not total or not resumed:
        return total
    step = checkpoint_step(resumed)
    return None if step is None else total - step


def backfill(out: Path, results: Path) -> int:
    """Add the fields that landed summaries predate, from the run folders under ``out``:
    ``correct`` (:func:`outcome_bits`) of eval steps, ``steps_run`` (:func:`steps_run`) of
    training steps. An eval step whose predictions disagree with the recorded accuracy (its
    folder was rerun or changed) is left alone, as is a training step whose results disagree on
    the runtime. Returns the steps filled in."""
    from shears.utils import atomic_write_json

    added = 0
    for f in sorted((results / "units").glob("*.json")):
        u, changed = json.loads(f.read_text()), False
        for name, rec in u["steps"].items():
            if "train_runtime_s" in rec and "steps_run" not in rec:
                tr = out / name / "train_results.json"
                extra = json.loads(tr.read_text()) if tr.is_file() else {}
                if extra.get("train_runtime_s") == rec["train_runtime_s"]:
                    rec["steps_run"], changed, added = steps_run(extra), True, added + 1
                continue
            if "accuracy" not in rec or rec.get("correct") is not None:
                continue
            bits = outcome_bits(out / name)
            if not bits:
                continue
            if abs(bits.count("1") / len(bits) - rec["accuracy"]) > 1e-9:
                logger.warning("%s: predictions disagree with the recorded accuracy; skipped", name)
                continue
            rec["correct"], changed, added = bits, True, added + 1
        if changed:
            atomic_write_json(f, u)
    return added


def _summary_path(results: Path, unit: str) -> Path:
    return results / "units" / (unit.replace("/", "__") + ".json")


def _done(results: Path, unit: Unit) -> bool:
    f = _summary_path(results, unit.name)
    return f.is_file() and json.loads(f.read_text()).get("digest") == unit.digest


def _listing(names: list[str], done: set[str]) -> str:
    """One line per unit: ``done`` (in ``done``) or ``todo``, and its name."""
    return "\n".join(f"{'done' if n in done else 'todo'}  {n}" for n in names)


def _finished_walls(results: Path) -> dict[tuple[str, str], list[float]]:
    """``unit_wall_s`` of the finished units in ``results``, by (kind, task)."""
    walls: dict[tuple[str, str], list[float]] = {}
    for f in (results / "units").glob("*.json"):
        rec = json.loads(f.read_text())
        if rec.get("unit_wall_s"):
            k, t = rec["unit"].split("/")[:2]
            walls.setdefault((k, t), []).append(rec["unit_wall_s"])
    return walls


def _unit_estimate_s(walls: dict[tuple[str, str], list[float]], name: str) -> float:
    """Wall seconds a unit may take: the mean of ``walls`` (:func:`_finished_walls`) of its kind
    and task (``kind/task/...``), else of its kind, else of every finished unit (0 if none)."""
    kind, task = name.split("/")[:2]
    for pick in (
        lambda k: k == (kind, task),
        lambda k: k[0] == kind,
        lambda k: True,
    ):  # fmt: skip
        vals = [w for k, ws in walls.items() if pick(k) for w in ws]
        if vals:
            return sum(vals) / len(vals)
    return 0.0


def _worker_init(threads: int) -> None:
    import torch

    if sys.platform.startswith("linux"):  # die with the study process
        import contextlib
        import ctypes
        import signal

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)
    torch.set_num_threads(threads)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s", force=True
    )
    for noisy in ("transformers", "datasets", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _job(out: Path, results: Path, unit: Unit, threads: int) -> str:
    from shears.utils import atomic_write_json

    t0 = time.perf_counter()
    times = run_unit(out, unit)
    summary = summarize(out, unit, times, threads)
    summary["unit_wall_s"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(_summary_path(results, unit.name), summary)
    return unit.name


def schedule(p: Planner, names: list[str], results: Path, jobs: int, threads: int) -> None:
    """Run the units ``names`` (priority order) on ``jobs`` processes, each once every unit it
    needs is done."""
    import multiprocessing as mp

    done = {n for n, u in p.units.items() if _done(results, u)}
    todo = [n for n in names if n not in done]
    logger.info("%d units to run, %d already done", len(todo), len(names) - len(todo))
    if jobs == 1:  # in this process, in priority order (needs come first)
        import torch

        torch.set_num_threads(threads)  # else torch takes every core: study processes oversubscribe
        for n in todo:
            _job(p.out, results, p.units[n], threads)
            logger.info("unit %s done", n)
        return
    running: dict[Any, str] = {}
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(jobs, ctx, _worker_init, (threads,)) as pool:
        while todo or running:
            for n in list(todo):
                if len(running) >= jobs:
                    break
                u = p.units[n]
                if all(d in done for d in u.needs):
                    running[pool.submit(_job, p.out, results, u, threads)] = n
                    todo.remove(n)
            if not running:
                raise RuntimeError(f"units wait on units not planned: {todo[:3]}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                fut.result()
                done.add(name)
                logger.info("unit %s done (%d to go)", name, len(todo) + len(running))


def choose_recipes(results: Path, tasks: list[str]) -> dict[str, str]:
    """Per task of ``tasks`` whose recipe check is done, the recipe whose NLS heuristic scored
    higher on validation (tie: ``pa``, the paper's)."""
    out = {}
    for task in tasks:
        sp, acc = SCALE["recipe_cells"][task], {}
        for recipe in RECIPES:
            f = _summary_path(results, f"recipe/{task}/{recipe}")
            if f.is_file():
                name = f"{task}/{recipe}/{_sp(sp)}/seed0/shears/eval_val_heuristic"
                acc[recipe] = json.loads(f.read_text())["steps"][name]["accuracy"]
        if len(acc) < len(RECIPES):
            logger.warning("recipe check of %s not complete: its grid waits", task)
            continue
        out[task] = "ao" if acc["ao"] > acc["pa"] else "pa"
        logger.info("recipe for %s: %s (validation accuracy %s)", task, out[task], acc)
    return out


def _of_tasks(names: list[str], tasks: list[str]) -> list[str]:
    """The units of ``tasks`` (``kind/<task>/...``), and the pruning every task shares."""
    return [n for n in names if n.startswith("prune/") or n.split("/")[1] in tasks]


def _with_needs(p: Planner, names: list[str]) -> set[str]:
    """``names`` and every unit they need, transitively."""
    out: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n not in out:
            out.add(n)
            stack += p.units[n].needs
    return out


def _save_settings(results: Path, recipes: dict[str, str], a: argparse.Namespace) -> None:
    """settings.json, merged with what another study process (other tasks) wrote."""
    from shears.utils import atomic_write_json

    f = results / "settings.json"
    old = json.loads(f.read_text()) if f.is_file() else {}
    merged = {**old.get("recipes", {}), **recipes}
    seeds = sorted(set(old.get("seeds", [])) | set(a.seeds))  # processes may split the seeds
    keys = {"scale": SCALE, "recipes": merged, "seeds": seeds, "threads": a.threads}
    atomic_write_json(f, {**old, **keys})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default="runs/ablation", help="study folder (resumed when it exists)")
    ap.add_argument("--results", default=str(RESULTS), help="where unit summaries go (committed)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--dry-run", action="store_true",
        help="print every unit, done or to do (from the summaries in --results), and stop",
    )  # fmt: skip
    ap.add_argument(
        "--backfill", action="store_true",
        help="add per-problem correctness and training steps run to landed summaries that lack "
        "them (from the run folders in --out), and stop",
    )  # fmt: skip
    ap.add_argument(
        "--recipe-only", action="store_true", help="stop after pruning, bases and recipe check"
    )
    ap.add_argument(
        "--tasks", nargs="+", default=None, help="only these tasks (default: all); two study "
        "processes may run disjoint tasks into the same folders",
    )  # fmt: skip
    ap.add_argument(
        "--units", nargs="+", default=None,
        help="run only these units of the grid (names as --dry-run prints them; their needs first)",
    )  # fmt: skip
    a = ap.parse_args(argv)
    tasks = a.tasks or list(SCALE["tasks"])
    if bad := [t for t in tasks if t not in SCALE["tasks"]]:
        ap.error(f"unknown task {bad[0]!r}; allowed: {', '.join(SCALE['tasks'])}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out, results = Path(a.out).resolve(), Path(a.results).resolve()
    if a.backfill:
        logger.info("fields added to %d steps of landed summaries", backfill(out, results))
        return
    out.mkdir(parents=True, exist_ok=True)
    # phase 1: prune, untuned bases, recipe check
    p = plan(out, a.device, [], {})
    first = _of_tasks(list(p.units), tasks)
    if a.dry_run:
        print(_listing(first, {n for n in first if _done(results, p.units[n])}))
    else:
        schedule(p, first, results, a.jobs, a.threads)
    if a.recipe_only:
        return
    recipes = choose_recipes(results, tasks)
    if a.dry_run and (waiting := [t for t in tasks if t not in recipes]):
        print(f"(the grids of {', '.join(waiting)} wait for their recipe check)")
    p = plan(out, a.device, a.seeds, recipes)
    names = _of_tasks(list(p.units), list(recipes))
    if a.units:
        if bad := [u for u in a.units if u not in names]:
            ap.error(f"unknown unit {bad[0]!r}; see --dry-run for the names")
        names = [n for n in names if n in _with_needs(p, a.units)]
    if a.dry_run:
        done = {n for n in names if _done(results, p.units[n])}
        print(_listing([n for n in names if n not in first], done))
        todo = [n for n in names if n not in done]
        walls = _finished_walls(results)
        hours = sum(_unit_estimate_s(walls, n) for n in todo) / 3600
        print(f"{len(names)} units of the grid: {len(names) - len(todo)} done, {len(todo)} to do "
              f"(about {hours:.1f} core-hours, from finished units of the same kind)")  # fmt: skip
        return
    _save_settings(results, recipes, a)
    schedule(p, names, results, a.jobs, a.threads)
    logger.info("ablation complete for %s", ", ".join(recipes))


if __name__ == "__main__":
    main(sys.argv[1:])
