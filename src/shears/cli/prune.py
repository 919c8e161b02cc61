"""``shears prune``: a thin layer turning flags (and an optional config file) into a PruneConfig."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from shears.config import add_config_args, config_from_args
from shears.prune.config import PruneConfig

logger = logging.getLogger("shears")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prune",
        help="sparsify a causal LM (wanda, magnitude, sparsegpt)",
        description="Prune the linear layers of the decoder blocks of a causal LM with Wanda "
        "(default), magnitude or SparseGPT, calibrating block by block, and save the sparse "
        "model with prune_report.json and sparsity_per_layer.png.",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --output-dir if it already exists"
    )
    add_config_args(parser, PruneConfig)
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from shears.prune.run import run

    cfg = config_from_args(PruneConfig, args)
    report = run(cfg, overwrite=args.overwrite, progress=True)
    summary = {k: v for k, v in report.to_dict().items() if k != "layers"}
    sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    return 0
