"""Loss curve of a training run as a PNG."""

from __future__ import annotations

from pathlib import Path


def plot_loss(
    steps: list[int], losses: list[float], path: str | Path, title: str = "NLS training loss"
) -> None:
    """Raw loss per logged step and a moving average (window ~ 1/20 of the run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if steps:
        ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss (one sampled sub-adapter per step)")
        k = max(1, len(losses) // 20)
        if k > 1:
            avg = [sum(losses[max(0, i - k + 1) : i + 1]) / len(losses[max(0, i - k + 1) : i + 1])
                   for i in range(len(losses))]  # fmt: skip
            ax.plot(steps, avg, lw=1.6, label=f"moving average ({k} logs)")
        ax.legend(fontsize=8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
