"""The run report: ``report.json``, ``report.md`` and ``accuracy.png`` in the run folder."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from shears.artifacts import (
    PRUNE_PLOT,
    RUN_PLOT,
    RUN_REPORT,
    RUN_REPORT_MD,
    SEARCH_PLOT,
    SEARCH_RANKS_PLOT,
    TRAIN_PLOT,
    DeploySummary,
    EvalSummary,
    ExportSummary,
    PruneSummary,
    SearchSummary,
    TrainSummary,
    read_summary,
)
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
    "sparsity per layer": f"prune/{PRUNE_PLOT}",
    "training loss": f"train/{TRAIN_PLOT}",
    "search trajectory": f"search/{SEARCH_PLOT}",
    "chosen ranks": f"search/{SEARCH_RANKS_PLOT}",
    "test accuracy": RUN_PLOT,
}
TRAIN_KEYS = ("global_steps", "first_loss", "final_loss", "train_runtime_s", "adapter_parameters")
SEARCH_KEYS = ("algorithm", "objective", "evaluations", "stop_reason", "best", "time_s")


def collect_rows(evals: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per evaluated variant (``{name: EvalConfig}``): accuracy, per-task metrics,
    parameter counts."""
    rows = []
    for name, ec in evals.items():
        res = read_summary(ec.output_dir, EvalSummary)
        if res is None:
            continue
        rows.append(
            {
                "variant": name,
                "label": LABELS.get(name, name),
                "test_accuracy": res.mean_accuracy,
                "tasks": {
                    t: {
                        k: v
                        for k, v in m.items()
                        if k in ("accuracy", "count", "correct", "perplexity")
                    }
                    for t, m in res.tasks.items()
                },
                "parameters": res.parameters,
                "nonzero_parameters": res.nonzero_parameters,
                "sparsity_all_parameters": res.sparsity,
                "adapter_parameters": res.adapter_parameters,
                "sub_adapter": res.sub_adapter,
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
    run = Path(cfg.run_dir)
    rows = collect_rows(plan.evals)
    prune = read_summary(plan.prune.output_dir, PruneSummary) or PruneSummary()
    train = asdict(read_summary(plan.train.output_dir, TrainSummary) or TrainSummary())
    search = asdict(read_summary(plan.search.output_dir, SearchSummary) or SearchSummary())
    export = read_summary(plan.export.output_dir, ExportSummary) or ExportSummary()
    deploy = None  # no deploy step: no deploy entry
    if plan.deploy is not None:
        deploy = asdict(read_summary(plan.deploy.output_dir, DeploySummary) or DeploySummary())
    if rows:
        plot_accuracy(rows, run / RUN_PLOT)
    report = {
        "run_dir": str(run),
        "config": to_dict(cfg),
        "rows": rows,
        "target_sparsity": prune.target_sparsity,
        "stage_times_s": times,
        "stages": stages or {},
        "validation": plan.validation,
        "total_time_s": round(sum(times.values()), 1),
        "train": {k: train[k] for k in TRAIN_KEYS},
        "search": {k: search[k] for k in SEARCH_KEYS},
        "export": asdict(export),
        **({"deploy": deploy} if deploy is not None else {}),
        "figures": {k: v for k, v in FIGURES.items() if (run / v).is_file()},
    }
    atomic_write_json(run / RUN_REPORT, report)
    atomic_write_text(run / RUN_REPORT_MD, render_markdown(report))
    logger.info("report: %s", run / RUN_REPORT_MD)
    for r in rows:
        logger.info(
            "  %-34s test acc %s  non-zero %s  adapter %s",
            r["label"],
            _fmt_pct(r["test_accuracy"]),
            _fmt_int(r["nonzero_parameters"]),
            _fmt_int(r["adapter_parameters"]),
        )
    return report


def _deploy_lines(d: dict | None) -> list[str]:
    """The deploy section of report.md (none without a deploy step or its results)."""
    if not d or not d.get("precision"):
        return []
    size = (d.get("bytes") or {}).get("ir_bin")
    lines = [
        "",
        "## Deploy",
        "",
        f"OpenVINO IR (`{d['output_dir']}`), {d['precision']}"
        + (f", sub-adapter {d['merge']}" if d.get("merge") else "")
        + (f", {size / 1e6:.1f} MB" if size is not None else "")
        + f"; IR matmul-weight sparsity {_fmt_pct(d.get('ir_sparsity'))} (base decoder "
        f"linears {_fmt_pct(d.get('base_linear_sparsity'))}); sparse kernel on "
        f"{d.get('sparse_kernel_layers')} of {d.get('matmul_layers')} matmuls.",
    ]
    v = d.get("verification")
    if v:
        agree = "match" if v.get("greedy_tokens_match") else "differ from"
        lines += [
            "",
            f"Verification: greedy tokens {agree} PyTorch over {v.get('tokens')} tokens; max "
            f"logit difference {v.get('max_abs_logit_diff', float('nan')):.3g}.",
        ]
    return lines


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
    lines += _deploy_lines(report.get("deploy"))
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
