"""Tables, paired differences, plots and one JSON from the unit summaries of bench/ablation.py.

Reads ``docs/results/ablation/units/*.json`` (whatever has landed: a partial study gives partial
tables, with n per cell) and writes, next to them, ``ablation_results.json``,
``ablation_tables.md``, ``ablation_<task>.png`` and ``ablation_pareto.png``.

    .venv/bin/python bench/ablation_report.py [--results docs/results/ablation]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results" / "ablation"
SEEDS = (0, 1, 2)

# variant -> the eval step under the cell folder (``{task}/{recipe}/{sp}/seed{n}/``)
CELL_EVALS = {
    "lora_pruned": "lora_pruned/eval",
    "shears_heuristic": "shears/eval_heuristic",
    "shears_hill_climbing": "shears/eval_hill_climbing",
    "distill_heuristic": "distill/eval_heuristic",
    "distill_hill_climbing": "distill/eval_hill_climbing",
    "lora_pruned_distill": "lora_pruned_distill/eval",
    "owl_heuristic": "owl/eval_heuristic",
    "owl_hill_climbing": "owl/eval_hill_climbing",
    "maxp_heuristic": "nls_maxp50/eval_heuristic",
    "maxp_hill_climbing": "nls_maxp50/eval_hill_climbing",
}
LABELS = {
    "dense_base": "dense base (untuned)",
    "lora_dense": "dense + LoRA r32",
    "pruned_base": "sparse base (untuned)",
    "lora_pruned": "sparse + LoRA r32",
    "shears_heuristic": "Shears, heuristic",
    "shears_hill_climbing": "Shears, hill-climbing",
    "distill_heuristic": "Shears + distill, heuristic",
    "distill_hill_climbing": "Shears + distill, hill-climbing",
    "lora_pruned_distill": "sparse + LoRA r32 + distill",
    "owl_heuristic": "Shears on OWL base, heuristic",
    "owl_hill_climbing": "Shears on OWL base, hill-climbing",
    "maxp_heuristic": "Shears, max-prob 0.5 NLS, heuristic",
    "maxp_hill_climbing": "Shears, max-prob 0.5 NLS, hill-climbing",
}
PAIRS = (
    ("shears_hill_climbing", "lora_pruned"),
    ("shears_heuristic", "lora_pruned"),
    ("shears_hill_climbing", "shears_heuristic"),
    ("distill_heuristic", "shears_heuristic"),
    ("distill_hill_climbing", "shears_hill_climbing"),
    ("distill_hill_climbing", "lora_pruned"),
    ("lora_pruned_distill", "lora_pruned"),
    ("owl_heuristic", "shears_heuristic"),
    ("owl_hill_climbing", "shears_hill_climbing"),
    ("maxp_heuristic", "shears_heuristic"),
    ("maxp_hill_climbing", "shears_hill_climbing"),
    ("maxp_hill_climbing", "lora_pruned"),
    ("lora_dense", "shears_hill_climbing"),
    ("lora_dense", "distill_hill_climbing"),
    ("lora_dense", "maxp_hill_climbing"),
)
# the Pareto front: super-adapter sub-adapters and fixed-rank LoRAs (eval step under the cell)
PARETO_SUPER = {
    "min": "pareto/eval_min",
    "budget ~60 %": "pareto/eval_b60",
    "heuristic": "shears/eval_heuristic",
    "hill-climbing": "shears/eval_hill_climbing",
    "budget ~85 %": "pareto/eval_b85",
    "max": "pareto/eval_max",
}
# a sub-adapter pairs with a LoRA whose size is within this fraction of its own, per seed
SAME_SIZE = 0.02


def pareto_loras(scale: dict) -> dict[str, str]:
    """The fixed-rank LoRAs of the front: ``{"r16": unit kind, ...}``; r_max is ``lora_pruned``."""
    loras = {f"r{r}": f"lora_r{r}" for r in scale["pareto_ranks"]}
    return {**loras, f"r{max(scale['space']['widths'])}": "lora_pruned"}


def stats(values: list[float]) -> dict[str, Any]:
    """Mean, standard error (n > 1), n, the values; and the sign count of a difference."""
    n = len(values)
    mean = sum(values) / n if n else None
    stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else None
    signs = {
        "positive": sum(v > 1e-9 for v in values),
        "zero": sum(abs(v) <= 1e-9 for v in values),
        "negative": sum(v < -1e-9 for v in values),
    }
    return {"mean": mean, "stderr": stderr, "n": n, "values": values, "signs": signs}


def paired(a: dict[int, float], b: dict[int, float]) -> dict[str, Any]:
    """:func:`stats` of a - b over the seeds both have (per-seed values keyed by seed)."""
    return stats([a[s] - b[s] for s in sorted(set(a) & set(b))])


def mcnemar(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: the chance of a split of the discordant problems at least
    this uneven if a and b were equally likely to be the one right (binomial, p = 1/2)."""
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def pooled(bits_a: dict[int, str], bits_b: dict[int, str]) -> dict[str, Any] | None:
    """Problem-by-problem comparison of two variants, pooled over the seeds both have: problems
    only a got right, only b got right, the difference in points per problem and McNemar's p.
    It measures these trained adapters on these problems (test-sample noise), not training noise:
    the per-seed mean +- stderr stays the main figure."""
    seeds = sorted(s for s in set(bits_a) & set(bits_b) if len(bits_a[s]) == len(bits_b[s]))
    if not seeds:
        return None
    a_only = sum(x > y for s in seeds for x, y in zip(bits_a[s], bits_b[s], strict=True))
    b_only = sum(x < y for s in seeds for x, y in zip(bits_a[s], bits_b[s], strict=True))
    n = sum(len(bits_a[s]) for s in seeds)
    return {"seeds": seeds, "problems": n, "a_only": a_only, "b_only": b_only,
            "difference": (a_only - b_only) / n, "p_value": mcnemar(a_only, b_only)}  # fmt: skip


def load_steps(results: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every step record of every landed unit (``{step name: record}``), and the units."""
    steps, units = {}, {}
    for f in sorted((results / "units").glob("*.json")):
        u = json.loads(f.read_text())
        units[u["unit"]] = u
        steps.update(u["steps"])
    return steps, units


def _acc(steps: dict, name: str, key: str = "accuracy") -> Any:
    """``key`` of step ``name``'s record (its accuracy, or ``"correct"``: its per-problem
    outcomes); None when the step or the key is missing."""
    rec = steps.get(name)
    return None if rec is None else rec.get(key)


def cell_table(steps: dict, task: str, recipe: str, sp: str) -> dict[str, Any]:
    """Per variant of one task and sparsity: per-seed test accuracy and mean +- stderr."""
    rows: dict[str, Any] = {}
    names = {v: f"{task}/{recipe}/{sp}/seed{{s}}/{tail}" for v, tail in CELL_EVALS.items()}
    names["lora_dense"] = f"{task}/{recipe}/dense/seed{{s}}/lora_dense/eval"
    per_seed: dict[str, dict[int, float]] = {}
    bits: dict[str, dict[int, str]] = {}
    for variant, name in names.items():
        found = {s: name.format(s=s) for s in SEEDS}
        per_seed[variant] = {s: a for s, n in found.items() if (a := _acc(steps, n)) is not None}
        bits[variant] = {s: b for s, n in found.items() if (b := _acc(steps, n, "correct"))}
    for name, base in (
        ("dense_base", f"{task}/bases/dense"),
        ("pruned_base", f"{task}/bases/{sp}"),
    ):
        a = _acc(steps, base)
        rows[name] = {"label": LABELS[name], "accuracy": stats([] if a is None else [a])}
    for variant, accs in per_seed.items():
        rows[variant] = {
            "label": LABELS[variant],
            "accuracy": stats(list(accs.values())),
            "per_seed": accs,
        }
    diffs, problems = {}, {}
    for a, b in PAIRS:
        diffs[f"{a} - {b}"] = paired(per_seed[a], per_seed[b])
        problems[f"{a} - {b}"] = pooled(bits[a], bits[b])
    return {"variants": rows, "paired_differences": diffs, "per_problem": problems}


def pareto(
    steps: dict, units: dict, scale: dict, task: str, recipe: str, sp: str
) -> dict[str, Any]:
    """Test accuracy against adapter parameters: the super-adapter's sub-adapters and the
    fixed-rank LoRAs, over the seeds whose front is complete (every point landed, so both sides
    average the same trainings); per sub-adapter the paired difference to the LoRA of its size;
    the training cost of each side."""
    loras = pareto_loras(scale)
    names = {**{("super_adapter", k): v for k, v in PARETO_SUPER.items()},
             **{("lora", k): f"{v}/eval" for k, v in loras.items()}}  # fmt: skip
    recs = {
        key: {s: r for s in SEEDS
              if (r := steps.get(f"{task}/{recipe}/{sp}/seed{s}/{tail}"))
              and r.get("accuracy") is not None}
        for key, tail in names.items()
    }  # fmt: skip
    seeds = [s for s in SEEDS if all(s in per for per in recs.values())]

    def point(key) -> dict[str, Any]:
        rs = [recs[key][s] for s in seeds]
        # a search may pick another size at each seed: the mean size
        return {"adapter_parameters": stats([r["adapter_parameters"] for r in rs])["mean"],
                "accuracy": stats([r["accuracy"] for r in rs]),
                "per_seed": {s: recs[key][s]["accuracy"] for s in seeds}}  # fmt: skip

    front: dict[str, dict] = {"super_adapter": {}, "lora": {}}
    if seeds:
        for side, label in names:
            front[side][label] = point((side, label))
    same_size = {}
    for label, pt in front["super_adapter"].items():
        for r, lp in front["lora"].items():
            # per seed: a search may land just off a LoRA's size at one seed and on it at another
            near = {s: a for s, a in pt["per_seed"].items()
                    if abs(recs[("super_adapter", label)][s]["adapter_parameters"]
                           - lp["adapter_parameters"]) <= SAME_SIZE * lp["adapter_parameters"]}  # fmt: skip
            if near:
                same_size[f"{label} - LoRA {r}"] = paired(near, lp["per_seed"])

    def trainings(kind: str) -> list[tuple[dict, int]]:
        """Each front seed's ``kind`` training record and the torch threads of its unit."""
        out = []
        for s in seeds:
            u = units.get(f"{kind}/{task}/{recipe}/{sp}/seed{s}") or units.get(
                f"recipe/{task}/{recipe}"
            )
            rec = steps.get(f"{task}/{recipe}/{sp}/seed{s}/{kind}/train")
            if rec and u:
                out.append((rec, u.get("threads", 1)))
        return out

    def train_steps(kind: str) -> list[float]:
        return [r["global_steps"] for r, _ in trainings(kind) if r.get("global_steps")]

    def train_core_s(kind: str) -> list[float]:
        # a resumed training timed only the steps after its checkpoint: its rate x all its steps
        return [r["train_runtime_s"] * th * r["global_steps"] / r["steps_run"]
                for r, th in trainings(kind)
                if r.get("train_runtime_s") and r.get("steps_run")]  # fmt: skip

    def summed(per_kind) -> list[float]:
        return [sum(x) for x in zip(*(per_kind(k) for k in loras.values()), strict=False)]

    sides = (
        "super_adapter (one NLS training)",
        f"LoRA {' + '.join(loras)} ({len(loras)} trainings)",
    )
    return {
        "seeds": seeds,
        **front,
        "same_size_differences": same_size,
        # optimizer steps are the comparable cost (bench/train_step.py: an NLS step costs what a
        # LoRA step at r_max does); core-seconds are wall clock under whatever else ran then
        "train_steps": {
            sides[0]: stats(train_steps("shears")),
            sides[1]: stats(summed(train_steps)),
        },
        "train_core_s": {
            sides[0]: stats(train_core_s("shears")),
            sides[1]: stats(summed(train_core_s)),
        },
    }


def recipe_check(steps: dict, settings: dict) -> dict[str, Any]:
    out = {}
    for task, sp in settings["scale"]["recipe_cells"].items():
        out[task] = {
            r: _acc(steps, f"{task}/{r}/s{round(sp * 100)}/seed0/shears/eval_val_heuristic")
            for r in ("pa", "ao")
        }
    return out


def _fmt(a: dict, pct: bool = True, sign: bool = False) -> str:
    if a["mean"] is None:
        return "n/a"
    k = 100 if pct else 1
    m = f"{k * a['mean']:+.1f}" if sign else f"{k * a['mean']:.1f}"
    err = "" if a["stderr"] is None else f" ± {k * a['stderr']:.1f}"
    extra = ""
    if sign and a["n"]:
        s = a["signs"]
        extra = f", {s['positive']}+/{s['zero']}=/{s['negative']}−"
    return f"{m}{err} (n={a['n']}{extra})"


def _per_seed(accs: dict | None) -> str:
    """``52.0 / 54.5 / -``: a variant's test accuracy at each seed of SEEDS."""
    if not accs:
        return "n/a"
    return " / ".join("-" if accs.get(s) is None else f"{100 * accs[s]:.1f}" for s in SEEDS)


def _fmt_pooled(p: dict | None) -> str:
    if p is None:
        return "n/a"
    return f"{p['a_only']} / {p['b_only']} of {p['problems']}, p = {p['p_value']:.2f}"


def render(report: dict) -> str:
    sps = report["sparsities"]
    lines = ["## Recipe check (validation accuracy of the NLS heuristic, seed 0)", ""]
    lines += ["| task | prompt + answer | answer only | chosen |", "|---|---|---|---|"]
    for task, accs in report["recipe_check"].items():
        cells = [("n/a" if v is None else f"{100 * v:.1f}") for v in accs.values()]
        lines.append(f"| {task} | {' | '.join(cells)} | {report['recipes'].get(task, '-')} |")
    for task, table in report["tables"].items():
        lines += ["", f"## {task}: test accuracy (%)", ""]
        head = " | ".join(f"{sp[1:]} %" for sp in sps)
        lines += [f"| variant | {head} |", "|---|" + "---|" * len(sps)]
        for v in table[sps[0]]["variants"]:
            cells = [_fmt(table[sp]["variants"][v]["accuracy"]) for sp in sps]
            lines.append(f"| {LABELS[v]} | {' | '.join(cells)} |")
        lines += ["", f"Per seed ({' / '.join(map(str, SEEDS))}; - not landed):", ""]
        lines += [f"| variant | {head} |", "|---|" + "---|" * len(sps)]
        for v in table[sps[0]]["variants"]:
            cells = [_per_seed(table[sp]["variants"][v].get("per_seed")) for sp in sps]
            if any(c != "n/a" for c in cells):
                lines.append(f"| {LABELS[v]} | {' | '.join(cells)} |")
        lines += ["", "Paired differences (same seed), points (wins+/ties=/losses−):", ""]
        lines += [f"| a − b | {head} |", "|---|" + "---|" * len(sps)]
        for a, b in PAIRS:
            cells = [_fmt(table[sp]["paired_differences"][f"{a} - {b}"], sign=True) for sp in sps]
            if all(c == "n/a" for c in cells):
                continue
            lines.append(f"| {LABELS[a]} − {LABELS[b]} | {' | '.join(cells)} |")
        lines += ["", "Problem by problem, pooled over the seeds both have: problems only a got "
                  "right / only b got right, exact McNemar p (test-sample noise of these "
                  "trained adapters, not training noise):", ""]  # fmt: skip
        lines += [f"| a − b | {head} |", "|---|" + "---|" * len(sps)]
        for a, b in PAIRS:
            cells = [_fmt_pooled(table[sp]["per_problem"][f"{a} - {b}"]) for sp in sps]
            if all(c == "n/a" for c in cells):
                continue
            lines.append(f"| {LABELS[a]} − {LABELS[b]} | {' | '.join(cells)} |")
    for cell, front in report["pareto"].items():
        lines += ["", f"## Pareto front ({cell}): test accuracy vs adapter parameters", ""]
        seeds = ", ".join(map(str, front["seeds"])) or "none yet"
        lines += [f"Seeds whose front is complete (every point below averages these): {seeds}", ""]
        lines += ["| adapter | parameters (M) | accuracy (%) |", "|---|---:|---|"]
        for side, pts in (("super-adapter", front["super_adapter"]), ("LoRA", front["lora"])):
            for label, pt in sorted(pts.items(), key=lambda kv: kv[1]["adapter_parameters"]):
                m = pt["adapter_parameters"] / 1e6
                lines.append(f"| {side}: {label} | {m:.2f} | {_fmt(pt['accuracy'])} |")
        if front["same_size_differences"]:
            lines += [
                "",
                "Sub-adapter minus the LoRA of its size (within 2 % at each seed "
                "counted), paired by seed, points:",
                "",
            ]
            lines += ["| a − b | difference |", "|---|---|"]
            for pair, st in front["same_size_differences"].items():
                lines.append(f"| {pair.replace(' - ', ' − ')} | {_fmt(st, sign=True)} |")
        for side, st in front["train_steps"].items():
            lines.append(f"\nTraining optimizer steps, {side}: {_fmt(st, pct=False)}")
        core = "; ".join(f"{k}: {_fmt(v, pct=False)}" for k, v in front["train_core_s"].items())
        lines.append(
            "\n(An NLS step costs what a LoRA step at r_max does: "
            "bench/results/train_step_b2x128_t1.json.) Training core-seconds, each training's "
            "measured rate times its steps (a resumed training timed only its last process), "
            "wall clock under whatever else ran on the machine then, so not comparable: "
            f"{core}"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files, sps = [], report["sparsities"]
    for task, table in report["tables"].items():
        variants = [v for v in table[sps[0]]["variants"] if any(
            table[sp]["variants"][v]["accuracy"]["n"] for sp in sps)]  # fmt: skip
        fig, ax = plt.subplots(figsize=(11, 4))
        width = 0.8 / max(1, len(variants))
        colors = plt.get_cmap("tab20").colors
        for j, v in enumerate(variants):
            accs = [table[sp]["variants"][v]["accuracy"] for sp in sps]
            xs = [i + (j - (len(variants) - 1) / 2) * width for i in range(len(sps))]
            ax.bar(xs, [100 * (a["mean"] or 0) for a in accs], width,
                   yerr=[100 * (a["stderr"] or 0) for a in accs], capsize=2,
                   label=LABELS[v], color=colors[list(LABELS).index(v) % len(colors)])  # fmt: skip
        ax.set_xticks(range(len(sps)), [f"{sp[1:]} % sparsity" for sp in sps])
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}, 2.5 epochs (mean ± stderr over seeds)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars
        files.append(_save(fig, out / f"ablation_{task}.png"))
    for cell, front in report["pareto"].items():
        if not front["seeds"]:
            continue  # no seed with the whole front yet
        fig, ax = plt.subplots(figsize=(6, 4))
        for side, pts, marker in (("super-adapter (one training)", front["super_adapter"], "o"),
                                  ("fixed-rank LoRA (one training each)", front["lora"], "s")):  # fmt: skip
            items = sorted(pts.items(), key=lambda kv: kv[1]["adapter_parameters"])
            xs = [p["adapter_parameters"] / 1e6 for _, p in items]
            ys = [100 * p["accuracy"]["mean"] for _, p in items]
            es = [100 * (p["accuracy"]["stderr"] or 0) for _, p in items]
            ax.errorbar(xs, ys, yerr=es, marker=marker, capsize=2, label=side)
            at: dict[tuple[float, float], list[str]] = {}  # one label per point: "a = b"
            for (label, _), x, y in zip(items, xs, ys, strict=True):
                at.setdefault((x, y), []).append(label)
            for (x, y), labels in at.items():
                ax.annotate(" = ".join(labels), (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        st = front["train_steps"]
        txt = "; ".join(f"{k}: {v['mean']:.0f} steps" for k, v in st.items() if v["mean"])
        ax.set_xlabel("adapter parameters (M)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{cell}\n{txt}", fontsize=7)
        ax.legend(fontsize=7)
        files.append(_save(fig, out / "ablation_pareto.png"))
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return str(path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(RESULTS), help="bench/ablation.py --results folder")
    a = ap.parse_args(argv)
    results = Path(a.results)
    settings = json.loads((results / "settings.json").read_text())
    steps, units = load_steps(results)
    recipes = settings.get("recipes") or {}
    ex_task, ex_sp = settings["scale"]["extras_cell"]
    sps = [f"s{round(x * 100)}" for x in settings["scale"]["sparsities"]]
    tables = {t: {sp: cell_table(steps, t, r, sp) for sp in sps} for t, r in recipes.items()}
    fronts = {}
    if ex_task in recipes:
        sp = f"s{round(ex_sp * 100)}"
        fronts[f"{ex_task} at {round(ex_sp * 100)} %"] = pareto(
            steps, units, settings["scale"], ex_task, recipes[ex_task], sp
        )
    report = {
        "settings": settings,
        "sparsities": sps,
        "recipes": recipes,
        "recipe_check": recipe_check(steps, settings),
        "tables": tables,
        "pareto": fronts,
        "units_landed": sorted(units),
        "compute": {
            "unit_wall_s": {n: u.get("unit_wall_s") for n, u in units.items()},
            "total_core_s": round(
                sum((u.get("unit_wall_s") or 0) * u.get("threads", 1) for u in units.values()), 1
            ),
        },
    }
    from shears.utils import atomic_write_json, atomic_write_text

    report["plots"] = plot(report, results) if tables else []
    atomic_write_json(results / "ablation_results.json", report)
    text = render(report)
    atomic_write_text(results / "ablation_tables.md", text)
    print(text)
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
