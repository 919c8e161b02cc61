"""``shears generate``: a thin layer turning flags (and an optional config file) into a
GenerateConfig; prints each completion."""

from __future__ import annotations

import argparse

from shears.config import add_config_args, config_from_args
from shears.generate.config import GenerateConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="generate text from a model (+ super-adapter sub-config or PEFT adapter) or a "
        "deployed OpenVINO folder",
        description="Answer instructions with the models `shears eval` accepts: a model "
        "(folder, .gguf, hub id or named default), optionally with a Shears super-adapter at a "
        "chosen sub-adapter or an exported PEFT adapter, or a `shears deploy` folder. Greedy by "
        "default. Prints each completion; with --output-dir also writes completions.jsonl, "
        "generate_results.json and generate_config.json.",
    )
    p.add_argument(
        "--prompt",
        dest="prompts",
        action="append",
        default=argparse.SUPPRESS,
        metavar="TEXT",
        help="an instruction to answer, formatted in --prompt-style (repeatable)",
    )
    add_config_args(p, GenerateConfig, exclude=("prompts",))
    p.set_defaults(func=main)


def show(records: list[dict]) -> str:
    """The completions as text: a header line with the instruction, then the completion."""
    blocks = []
    for r in records:
        head = " ".join(r["instruction"].split())
        head = head if len(head) <= 72 else head[:69] + "..."
        blocks.append(f"=== [{r['index'] + 1}/{len(records)}] {head}\n{r['completion']}\n")
    return "\n".join(blocks)


def main(args: argparse.Namespace) -> int:
    from shears.generate.run import run

    cfg = config_from_args(GenerateConfig, args)
    res = run(cfg)
    print(show(res["completions"]), end="")
    return 0
