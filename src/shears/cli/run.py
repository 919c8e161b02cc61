"""``shears run``: the whole pipeline from one config file (or the embedded default)."""

from __future__ import annotations

import argparse
import logging

from shears.pipeline.config import RunConfig, default_config_text, load_run_config

logger = logging.getLogger("shears")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run prune -> train -> search -> eval -> export from one config",
        description=(
            "Run the whole Shears pipeline under one run folder. Like a build system, stages whose "
            "settings did not change are reused and the first changed stage and those after it "
            "run again, so a killed run resumes where it stopped. With no CONFIG it runs the embedded "
            "default (SmolLM2-135M-Instruct, reasoning-gym, CPU-sized budgets). Sections of the "
            "config: "
            + ", ".join(f"{f}" for f in RunConfig.__dataclass_fields__)
            + ". Use `shears run --print-default` to see the default."
        ),
    )
    p.add_argument("config", nargs="?", help="YAML/JSON run config (default: the embedded default)")
    p.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides, e.g. run_dir=runs/a train.max_steps=20 prune.sparsity=0.4",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="run every stage again, replacing each stage's earlier output (only in a folder "
        "written by `shears run`; without it, only stages whose settings changed run again)",
    )
    p.add_argument(
        "--baselines", action="store_true", help="add LoRA on the pruned and dense models"
    )
    p.add_argument("--print-default", action="store_true", help="print the embedded default config")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from shears.pipeline.run import run_pipeline

    if args.print_default:
        print(default_config_text(), end="")  # noqa: T201 - the requested output
        return 0
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not config.endswith((".yaml", ".yml", ".json")):
        overrides.insert(0, config)  # `shears run key=value` without a config file
        config = None
    if args.baselines:
        overrides.append("baselines=true")
    cfg = load_run_config(config, overrides)
    run_pipeline(cfg, overwrite=args.overwrite)
    return 0
