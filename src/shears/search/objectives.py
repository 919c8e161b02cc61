"""Objectives other than the answer-token loss: generative math accuracy, multiple-choice
accuracy (both from ``shears.evaluate``), and a plain function (synthetic tests, custom scores).

The two accuracies take a ``parallel`` (:mod:`shears.evaluate.parallel`): the processes of a
data-parallel launch share the batches and every one gets the same accuracy."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.search_space import Config, SearchSpace
from shears.evaluate.parallel import SINGLE, DataParallel


class FunctionObjective:
    """Wrap ``fn(config) -> float``; ``maximize`` says which way is better."""

    def __init__(self, fn: Callable[[Config], float], maximize: bool = False, name: str = "fn"):
        self.fn = fn
        self.maximize = maximize
        self.name = name
        self.calls = 0

    def __call__(self, config: Config) -> float:
        self.calls += 1
        return float(self.fn(config))


class MathAccuracyObjective:
    """Accuracy of greedy answers (last number within 1e-3, or AQuA letters) on examples with
    ``instruction`` and ``answer``; higher is better."""

    maximize = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        layers: dict[str, ElasticLoRALinear],
        space: SearchSpace,
        examples: list[dict],
        style: str = "alpaca",
        batch_size: int = 8,
        max_new_tokens: int = 256,
        kind: str = "number",
        parallel: DataParallel = SINGLE,
    ) -> None:
        self.model, self.tokenizer, self.layers, self.space = model, tokenizer, layers, space
        self.examples, self.style, self.batch_size = examples, style, batch_size
        self.max_new_tokens, self.kind, self.parallel = max_new_tokens, kind, parallel
        self.name = "math_accuracy"

    def __call__(self, config: Config) -> float:
        from shears.evaluate.math import math_accuracy

        self.space.apply(self.layers, config)
        acc, _ = math_accuracy(
            self.model,
            self.tokenizer,
            self.examples,
            self.style,
            self.batch_size,
            self.max_new_tokens,
            self.kind,
            parallel=self.parallel,
        )
        return acc


class ChoiceAccuracyObjective:
    """Multiple-choice accuracy by the log-likelihood of each choice (``choices``, ``label``);
    higher is better."""

    maximize = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        layers: dict[str, ElasticLoRALinear],
        space: SearchSpace,
        examples: list[dict],
        style: str = "alpaca",
        batch_size: int = 8,
        metric: str = "acc",
        parallel: DataParallel = SINGLE,
    ) -> None:
        self.model, self.tokenizer, self.layers, self.space = model, tokenizer, layers, space
        self.examples, self.style, self.batch_size, self.metric = (
            examples,
            style,
            batch_size,
            metric,
        )
        self.parallel = parallel
        self.name = f"choice_{metric}"

    def __call__(self, config: Config) -> float:
        from shears.evaluate.choice import choice_metrics, choice_scores

        self.space.apply(self.layers, config)
        scores = choice_scores(
            self.model,
            self.tokenizer,
            self.examples,
            self.style,
            self.batch_size,
            parallel=self.parallel,
        )
        metrics, _ = choice_metrics(scores, self.examples)
        return metrics[self.metric]
