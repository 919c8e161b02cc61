"""Stage 3: search a trained elastic super-adapter for a good sub-adapter.

Library API:

- :func:`run_search` (:func:`shears.search.run.run`) / :class:`SearchConfig` ->
  :class:`SearchResult`: the whole ``shears search`` (model + adapter folder in,
  ``search_results.json`` out).
- :class:`CachedEvaluator`: config -> score through any objective, cached by canonical config,
  budgeted, logged to JSONL for resume.
- :func:`run_algorithm` (its settings: :class:`AlgorithmConfig`) and the algorithms
  :func:`hill_climb`, :func:`random_search`, :func:`evolutionary` (plus ``heuristic`` / ``min`` /
  ``max`` reference points).
- Objectives: :class:`AnswerLossObjective` (fast: block-output reuse, answer-position logits,
  first-order screening), :class:`MathAccuracyObjective`, :class:`ChoiceAccuracyObjective`,
  :class:`FunctionObjective`.
- :func:`neighbours`, :func:`config_key`.
"""

from shears.search.algorithms import run_algorithm
from shears.search.answer_loss import AnswerLossObjective, encode_validation
from shears.search.config import ALGORITHMS, OBJECTIVES, AlgorithmConfig, SearchConfig
from shears.search.evaluator import BudgetExhausted, CachedEvaluator, Evaluation
from shears.search.evolutionary import evolutionary
from shears.search.hill_climb import SearchOutcome, hill_climb
from shears.search.objectives import (
    ChoiceAccuracyObjective,
    FunctionObjective,
    MathAccuracyObjective,
)
from shears.search.random_search import random_search
from shears.search.result import SearchResult
from shears.search.run import run as run_search
from shears.search.space_ops import config_key, neighbours

__all__ = [
    "ALGORITHMS",
    "OBJECTIVES",
    "AlgorithmConfig",
    "AnswerLossObjective",
    "BudgetExhausted",
    "CachedEvaluator",
    "ChoiceAccuracyObjective",
    "Evaluation",
    "FunctionObjective",
    "MathAccuracyObjective",
    "SearchConfig",
    "SearchOutcome",
    "SearchResult",
    "config_key",
    "encode_validation",
    "evolutionary",
    "hill_climb",
    "neighbours",
    "random_search",
    "run_algorithm",
    "run_search",
]
