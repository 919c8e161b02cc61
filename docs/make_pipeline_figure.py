"""Draw docs/pipeline.png, the one-picture overview in the README (run: python docs/make_pipeline_figure.py)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

STAGES = [
    ("prune", "Wanda / SparseGPT\nper-row, block by block\n-> sparse frozen base"),
    ("train", "elastic LoRA (NLS)\nrandom sub-rank per step\n[32, 24, 16] per group"),
    ("search", "heuristic start\nhill-climbing on\nvalidation loss"),
    ("eval", "held-out test split\naccuracy, ppl,\nnon-zero params"),
    ("export", "stock-PEFT adapter\n(rank_pattern)\nsparsity-keeping merge"),
]

fig, ax = plt.subplots(figsize=(11, 2.4))
ax.set_xlim(0, len(STAGES) * 2.2)
ax.set_ylim(0, 2.2)
ax.axis("off")
for i, (name, text) in enumerate(STAGES):
    x = i * 2.2 + 0.1
    ax.add_patch(
        FancyBboxPatch((x, 0.2), 1.8, 1.8, boxstyle="round,pad=0.05", fc="#dde8f5", ec="#4c72b0")
    )
    ax.text(x + 0.9, 1.65, f"shears {name}", ha="center", va="center", fontsize=11, weight="bold")
    ax.text(x + 0.9, 0.85, text, ha="center", va="center", fontsize=8.5)
    if i < len(STAGES) - 1:
        ax.annotate(
            "", xy=(x + 2.15, 1.1), xytext=(x + 1.9, 1.1), arrowprops=dict(arrowstyle="->", lw=1.5)
        )
ax.set_title("shears run: one command, each stage resumable, one report", fontsize=11)
fig.tight_layout()
fig.savefig("docs/pipeline.png", dpi=110)
