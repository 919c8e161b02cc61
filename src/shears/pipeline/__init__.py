"""The whole Shears pipeline in one call: prune -> train -> search -> eval -> export (-> deploy)
-> report."""

from shears.pipeline.config import RunConfig, load_run_config
from shears.pipeline.run import run_pipeline

__all__ = ["RunConfig", "load_run_config", "run_pipeline"]
