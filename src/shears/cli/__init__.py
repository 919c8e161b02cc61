"""The ``shears`` console script: one subcommand per stage, each a thin layer over the library.

Each ``shears.cli.<stage>`` module defines ``register(subparsers)`` that adds its parser and sets
``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from shears import __version__
from shears.errors import ShearsError
from shears.utils import setup_logging

SUBCOMMANDS = ("prune", "train", "search", "eval", "export", "deploy", "generate", "run")

logger = logging.getLogger("shears")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shears",
        description="Sparse, fine-tuned LLMs: Wanda pruning -> elastic LoRA (NLS) training -> "
        "sub-adapter search -> evaluation -> PEFT export (Shears, arXiv 2404.10934).",
    )
    parser.add_argument("--version", action="version", version=f"shears {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        if importlib.util.find_spec(f"shears.cli.{name}") is not None:
            importlib.import_module(f"shears.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ShearsError as exc:
        logger.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
