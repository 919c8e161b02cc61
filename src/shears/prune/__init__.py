"""Stage 1: sparsify a causal LM (Wanda, magnitude, SparseGPT).

Pure tensor math lives in ``masks``, ``wanda``, ``magnitude`` and ``sparsegpt``; ``calibrate`` is
the engine (hooks, sequential block-by-block calibration); ``run`` is the stage (``run(cfg)``,
here ``run_prune``: check, load, prune, save) and ``result`` what it reports (``PruneResult``,
written as ``prune_report.json``).
"""

from shears.prune.config import METHODS, PruneConfig
from shears.prune.result import PruneResult
from shears.prune.run import prune_model
from shears.prune.run import run as run_prune

__all__ = ["METHODS", "PruneConfig", "PruneResult", "prune_model", "run_prune"]
