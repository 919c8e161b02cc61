"""Evaluation: math by generation, multiple choice (log-likelihood or generation), perplexity,
and the lm-evaluation-harness bridge (parameter counts: :mod:`shears.sparsity`).

Reusable pieces (e.g. for the sub-adapter search):

- :func:`generate_answers` (``evaluate.generate``): greedy batched answers in the shared prompt.
- :func:`math_accuracy` (``evaluate.math``) and :func:`extract_number` (``evaluate.extract``).
- :func:`choice_scores` / :func:`choice_metrics` (``evaluate.choice``).
- :class:`EvalConfig` (``evaluate.config``), :func:`evaluate_model` (``evaluate.suite``),
  :func:`run_eval` (``evaluate.run.run``) and :class:`EvalResult` (``evaluate.result``).
"""

from shears.evaluate.choice import choice_metrics, choice_scores, generation_choice_accuracy
from shears.evaluate.config import EvalConfig
from shears.evaluate.extract import extract_answer_word, extract_letter, extract_number
from shears.evaluate.generate import GenerationResult, generate_answers
from shears.evaluate.math import math_accuracy
from shears.evaluate.result import EvalResult
from shears.evaluate.run import run as run_eval
from shears.evaluate.suite import evaluate_model
from shears.evaluate.tasks import TaskSpec, load_task_data, parse_task

__all__ = [
    "EvalConfig",
    "EvalResult",
    "TaskSpec",
    "choice_metrics",
    "choice_scores",
    "evaluate_model",
    "extract_answer_word",
    "extract_letter",
    "extract_number",
    "GenerationResult",
    "generate_answers",
    "generation_choice_accuracy",
    "load_task_data",
    "math_accuracy",
    "parse_task",
    "run_eval",
]
