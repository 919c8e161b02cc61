"""PNG plots of a search: objective versus evaluations, chosen rank per layer and group."""

from __future__ import annotations

import math
from pathlib import Path

from shears.search.space_ops import group_layer_label


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_progress(history: list[dict], objective: str, maximize: bool, path: str | Path) -> None:
    """Every evaluation's score (dots) and the best so far (line) against evaluations spent."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [h["index"] + 1 for h in history if not math.isnan(h["score"])]
    ys = [h["score"] for h in history if not math.isnan(h["score"])]
    best, run = [], None
    for y in ys:
        run = y if run is None else (max(run, y) if maximize else min(run, y))
        best.append(run)
    ax.scatter(xs, ys, s=10, alpha=0.5, label="evaluated")
    ax.plot(xs, best, color="C3", label="best so far")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(objective + (" (higher is better)" if maximize else " (lower is better)"))
    ax.set_title("sub-adapter search")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_ranks(config: dict[str, int], widths: dict[str, list[int]], path: str | Path) -> None:
    """Chosen rank of every group, by decoder layer (x) and group kind (one line each)."""
    plt = _pyplot()
    series: dict[str, list[tuple[int, int]]] = {}
    for i, (name, r) in enumerate(config.items()):
        layer, label = group_layer_label(name)
        series.setdefault(label, []).append((i if layer is None else layer, r))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, (label, pts) in enumerate(sorted(series.items())):
        xs, ys = zip(*sorted(pts), strict=True)
        ax.plot(xs, [y + 0.25 * (k - len(series) / 2) for y in ys], "o-", ms=4, label=label)
    all_w = sorted({w for ws in widths.values() for w in ws})
    ax.set_yticks(all_w)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("rank (lines offset slightly to stay visible)")
    ax.set_title("chosen sub-adapter")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
