"""Stage 1: sparsify a causal LM (Wanda, magnitude, SparseGPT).

Pure tensor math lives in ``masks``, ``wanda``, ``magnitude`` and ``sparsegpt``; ``calibrate`` is
the engine (hooks, sequential block-by-block calibration); ``api`` loads, prunes and saves.
"""

from shears.prune.api import prune_model, run_prune
from shears.prune.config import METHODS, PruneConfig

__all__ = ["METHODS", "PruneConfig", "prune_model", "run_prune"]
