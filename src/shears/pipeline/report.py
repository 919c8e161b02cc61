"""The run report: ``report.json``, ``report.md`` and ``accuracy.png`` in the run folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from shears.config import to_dict
from shears.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

LABELS = {
    "dense_base": "dense base (no tuning)",
    "pruned_base": "pruned base (no tuning)",
    "shears_heuristic": "Shears, heuristic sub-adapter",
    "shears_searched": "Shears, searched sub-adapter",
    "lora_pruned": "LoRA r_max on the pruned model",
    "lora_dense": "LoRA r_max on the dense model",
}

FIGURES = {
    "sparsity per layer": "prune/sparsity_per_layer.png",
    "training loss": "train/loss.png",
    "search trajectory": "search/search_progress.png",
    "chosen ranks": "search/search_ranks.png",
    "test accuracy": "accuracy.png",
}


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect_rows(evals: dict[str, Any], eval_file: str) -> list[dict[str, Any]]:
    """One row per evaluated variant (``{name: EvalConfig}``): accuracy, per-task metrics,
    parameter counts."""
    rows = []
    for name, ec in evals.items():
        res = _read(Path(ec.output_dir) / eval_file)
        if res is None:
            continue
        params = res.get("parameters", {})
        sub = res.get("sub_adapter") or {}
        rows.append(
            {
                "variant": name,
                "label": LABELS.get(name, name),
                "test_accuracy": res.get("mean_accuracy"),
                "tasks": {
                    t: {
                        k: v
                        for k, v in m.items()
                        if k in ("accuracy", "count", "correct", "perplexity")
                    }
                    for t, m in res.get("tasks", {}).items()
                },
                "parameters": params.get("parameters"),
                "nonzero_parameters": params.get("nonzero_parameters"),
                "sparsity_all_parameters": params.get("sparsity"),
                "adapter_parameters": sub.get("adapter_parameters", 0),
                "sub_adapter": sub.get("name"),
            }
        )
    return rows


def plot_accuracy(rows: list[dict], path: Path) -> None:
    """Bar chart of test accuracy per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["variant"] for r in rows]
    accs = [100 * (r["test_accuracy"] or 0.0) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars = ax.barh(names[::-1], accs[::-1], color="#4c72b0")
    for b, a in zip(bars, accs[::-1], strict=True):
        ax.text(b.get_width() + 0.5, b.get_y() + b.get_height() / 2, f"{a:.1f}", va="center")
    ax.set_xlabel("test accuracy (%)")
    ax.set_xlim(0, max(accs + [1]) * 1.2 + 1)
    ax.set_title("Test accuracy (held-out split)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f} M"


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def write_report(
    cfg, plan, times: dict[str, float], stages: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Gather the stage outputs of ``cfg.run_dir`` into report.json / report.md / accuracy.png.
    ``stages``: which stages this invocation reused and ran (``{"reused": [...], "status": ...}``)."""
    from shears.pipeline.run import result_files

    run = Path(cfg.run_dir)
    files = result_files()
    rows = collect_rows(plan.evals, files["eval"])
    prune_report = _read(Path(plan.prune.output_dir) / files["prune"]) or {}
    train_results = _read(Path(plan.train.output_dir) / files["train"]) or {}
    search_results = _read(Path(plan.search.output_dir) / files["search"]) or {}
    export_results = _read(Path(plan.export.output_dir) / files["export"]) or {}
    if rows:
        plot_accuracy(rows, run / "accuracy.png")
    targets = prune_report.get("targets")
    target_sparsity = (
        targets.get("sparsity") if isinstance(targets, dict) else prune_report.get("sparsity")
    )
    report = {
        "run_dir": str(run),
        "config": to_dict(cfg),
        "rows": rows,
        "target_sparsity": target_sparsity,
        "stage_times_s": times,
        "stages": stages or {},
        "validation": plan.validation,
        "total_time_s": round(sum(times.values()), 1),
        "train": {
            k: train_results.get(k)
            for k in (
                "global_steps",
                "first_loss",
                "final_loss",
                "train_runtime_s",
                "adapter_parameters",
            )
        },
        "search": {
            k: search_results.get(k)
            for k in ("algorithm", "objective", "evaluations", "stop_reason", "best", "time_s")
        },
        "export": {
            "output_dir": export_results.get("output_dir"),
            "parameters": export_results.get("parameters"),
            "merge": (export_results.get("merge") or {}).get("summary"),
        },
        "figures": {k: v for k, v in FIGURES.items() if (run / v).is_file()},
    }
    atomic_write_json(run / "report.json", report)
    atomic_write_text(run / "report.md", render_markdown(report))
    logger.info("report: %s", run / "report.md")
    for r in rows:
        logger.info(
            "  %-34s test acc %s  non-zero %s  adapter %s",
            r["label"],
            _fmt_pct(r["test_accuracy"]),
            _fmt_int(r["nonzero_parameters"]),
            _fmt_int(r["adapter_parameters"]),
        )
    return report


def render_markdown(report: dict) -> str:
    cfg = report["config"]
    lines = [
        "# Shears run report",
        "",
        f"Model `{cfg['model']}`, task `{cfg['task']}`, seed {cfg['seed']}; "
        f"target sparsity {_fmt_pct(report.get('target_sparsity'))}. "
        "Test accuracy on the held-out test split (never used for training or search).",
        "",
        "| variant | test accuracy | non-zero params | sparsity (all params) | adapter params |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['label']} | {_fmt_pct(r['test_accuracy'])} | {_fmt_int(r['nonzero_parameters'])} | "
            f"{_fmt_pct(r['sparsity_all_parameters'])} | {_fmt_int(r['adapter_parameters'])} |"
        )
    counts = {t: m.get("count") for r in report["rows"][:1] for t, m in r["tasks"].items()}
    if counts:
        lines += [
            "",
            "Test examples per task: " + ", ".join(f"`{t}` {n}" for t, n in counts.items()) + ".",
        ]
    lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["stage_times_s"].items()]
    lines.append(f"| **total** | **{report['total_time_s']:.1f}** |")
    t = report["train"]
    if t.get("global_steps") is not None:
        lines += [
            "",
            "## Training",
            "",
            f"{t['global_steps']} optimizer steps of NLS training; loss {t['first_loss']:.3f} -> "
            f"{t['final_loss']:.3f} ({t['train_runtime_s']:.0f} s).",
        ]
    p = report["export"].get("parameters") or {}
    if p.get("nonzero_ratio_dense_over_shears"):
        lines += [
            "",
            "## Non-zero parameters",
            "",
            f"Sparse base + searched sub-adapter: {p['shears_nonzero_parameters']:,} non-zero; "
            f"dense base + LoRA at r_max: {p['dense_lora_nonzero_parameters']:,} "
            f"(**{p['nonzero_ratio_dense_over_shears']:.2f}x** fewer, the paper's 1.91x measure).",
        ]
    if report["export"].get("merge"):
        lines += [f"Merged export: {report['export']['merge']}."]
    s = report["search"]
    if s.get("best"):
        lines += [
            "",
            "## Search",
            "",
            f"{s['algorithm']} on the validation {s['objective']}: {s['evaluations']} configurations "
            f"evaluated; best score {s['best'].get('score')}.",
        ]
    if report["figures"]:
        lines += ["", "## Figures", ""]
        lines += [f"![{k}]({v})" for k, v in report["figures"].items()]
    return "\n".join(lines) + "\n"
