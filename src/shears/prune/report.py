"""The pruning report's plot: a PNG of sparsity per layer (the numbers: :mod:`shears.sparsity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_sparsity(layers: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Bar chart of the fraction of zeros of every pruned layer, coloured by layer kind.

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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
