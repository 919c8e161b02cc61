"""The pruning report's plot: a PNG of sparsity per layer (the numbers: :mod:`shears.sparsity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_sparsity(
    layers: dict[str, dict[str, Any]],
    path: str | Path,
    title: str = "",
    profile: list[dict[str, Any]] | None = None,
) -> Path:
    """Bar chart of the fraction of zeros of every pruned layer, coloured by layer kind; with an
    OWL ``profile`` (per block: ``block``, ``outlier_ratio``, ``sparsity``), each block's outlier
    ratio as a black line on a second axis.

    Uses matplotlib's Agg canvas directly (no global backend switch, no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(layers)
    kinds = sorted({n.rsplit(".", 1)[-1] for n in names})
    colours = {k: f"C{i % 10}" for i, k in enumerate(kinds)}
    fig = Figure(figsize=(max(6.0, min(24.0, 0.08 * len(names) + 4)), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(names)))
    ax.bar(
        x,
        [layers[n]["sparsity"] for n in names],
        color=[colours[n.rsplit(".", 1)[-1]] for n in names],
        width=1.0,
    )
    for kind, c in colours.items():
        ax.bar([0], [0], color=c, label=kind)
    blocks = [layers[n].get("block") for n in names]
    starts = [i for i, b in enumerate(blocks) if i == 0 or b != blocks[i - 1]]
    step = max(1, len(starts) // 16)
    ax.set_xticks([starts[i] for i in range(0, len(starts), step)])
    ax.set_xticklabels([str(blocks[starts[i]]) for i in range(0, len(starts), step)])
    ax.set_xlabel("decoder block")
    ax.set_ylabel("fraction of zeros")
    ax.set_ylim(0, 1)
    ax.set_title(title or "sparsity per layer")
    ax.legend(fontsize="small", ncol=min(len(kinds), 7), loc="upper right")
    if profile:
        _plot_ratios(ax, blocks, profile)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _plot_ratios(ax: Any, blocks: list[Any], profile: list[dict[str, Any]]) -> None:
    """Each block's OWL outlier ratio, at the middle of its bars, on a twin y axis."""
    centre = {}
    for i, b in enumerate(blocks):
        first, n = centre.get(b, (i, 0))
        centre[b] = (first, n + 1)
    xs = [centre[p["block"]][0] + (centre[p["block"]][1] - 1) / 2 for p in profile]
    ax2 = ax.twinx()
    ax2.plot(xs, [p["outlier_ratio"] for p in profile], "k.-", label="outlier ratio (OWL)")
    ax2.set_ylabel("outlier ratio")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize="small", loc="upper left")
