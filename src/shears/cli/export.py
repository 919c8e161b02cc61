"""``shears export``: write a chosen sub-adapter as a stock-PEFT LoRA (optionally merged)."""

from __future__ import annotations

import argparse

from shears.config import add_dataclass_args, dataclass_from_args, load_config_file
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
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file with ExportConfig keys")
    add_dataclass_args(p, ExportConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from shears.export.run import run

    base = load_config_file(args.config) if args.config else None
    cfg = dataclass_from_args(ExportConfig, args, base)
    print(run(cfg).output_dir)
    return 0
