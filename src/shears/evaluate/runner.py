"""The former home of the eval stage, kept so that old imports keep working: ``EvalConfig`` is
now in :mod:`shears.evaluate.config`, ``evaluate_model`` in :mod:`shears.evaluate.suite` and
``run_eval`` is :func:`shears.evaluate.run.run`."""

from shears.evaluate.config import EvalConfig
from shears.evaluate.result import EvalResult
from shears.evaluate.run import adapter_kind, attach_adapter, find_prompt_style, run
from shears.evaluate.run import run as run_eval
from shears.evaluate.suite import evaluate_model, prepare_tasks

__all__ = [
    "EvalConfig",
    "EvalResult",
    "adapter_kind",
    "attach_adapter",
    "evaluate_model",
    "find_prompt_style",
    "prepare_tasks",
    "run",
    "run_eval",
]
