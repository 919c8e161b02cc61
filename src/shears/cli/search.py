"""``shears search``: find a good sub-adapter in a trained super-adapter."""

from __future__ import annotations

import argparse

from shears.artifacts import SEARCH_RESULTS
from shears.config import add_config_args, config_from_args


def register(sub) -> None:
    from shears.search.config import SearchConfig

    p = sub.add_parser(
        "search",
        help="search a trained super-adapter for a sub-adapter (heuristic, hill-climbing, ...)",
        description="Search the elastic super-adapter written by `shears train` for a good "
        "sub-adapter on held-out validation data. Writes search_results.json (best.config is "
        "what `shears export` takes), search_log.jsonl (resumable) and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_config_args(p, SearchConfig)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from shears.evaluate.parallel import DataParallel
    from shears.search.config import SearchConfig
    from shears.search.run import run

    cfg = config_from_args(SearchConfig, args)
    res = run(cfg)
    if not DataParallel.current(cfg.device).is_main:  # the main process of a launch reports
        return 0
    score, size = (res.best.score, res.best.adapter_parameters) if res.best else (None, None)
    print(
        f"best {res.objective}={score} adapter_parameters={size} "
        f"evaluations={res.evaluations} -> {cfg.output_dir}/{SEARCH_RESULTS}"
    )
    return 0
