"""``shears export``: write a chosen sub-adapter as a stock-PEFT LoRA (optionally merged)."""

from __future__ import annotations

import argparse

from shears.config import add_config_args, config_from_args
from shears.export.config import ExportConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a sub-adapter as a stock-PEFT LoRA (optionally merged), with a model card",
        description="Write the chosen sub-adapter of a trained super-adapter as a plain PEFT "
        "LoRA adapter (rank_pattern / alpha_pattern per module, loads with stock "
        "PeftModel.from_pretrained), optionally a merged model that keeps the base's sparsity, "
        "a model card README.md, export_results.json and export_config.json.",
    )
    add_config_args(p, ExportConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from shears.export.run import run

    cfg = config_from_args(ExportConfig, args)
    print(run(cfg).output_dir)
    return 0
