"""``shears eval``: a thin layer turning flags (and an optional config file) into an EvalConfig."""

from __future__ import annotations

import argparse
import json

from shears.config import add_config_args, config_from_args
from shears.evaluate.config import EvalConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model (+ super-adapter sub-config or PEFT adapter) on math, multiple "
        "choice, perplexity and lm-eval tasks",
        description="Evaluate a (sparse) model, optionally with a Shears super-adapter at a chosen "
        "sub-adapter or an exported PEFT adapter. Writes eval_results.json (per-task accuracy, "
        "unweighted mean, counts, non-zero parameters) and predictions.jsonl.",
    )
    add_config_args(p, EvalConfig)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from shears.evaluate.parallel import DataParallel
    from shears.evaluate.run import run

    cfg = config_from_args(EvalConfig, args)
    res = run(cfg)
    if not DataParallel.current(cfg.device).is_main:  # the main process of a launch reports
        return 0
    summary = {
        "mean_accuracy": res.mean_accuracy,
        "tasks": {
            name: {k: v for k, v in m.items() if k in ("accuracy", "perplexity", "count")}
            for name, m in res.tasks.items()
        },
        "nonzero_parameters": res.parameters["nonzero_parameters"],
        "output_dir": cfg.output_dir,
    }
    print(json.dumps(summary, indent=2))
    return 0
