"""``shears deploy``: a Shears model as OpenVINO IR for the CPU, keeping its exact zeros."""

from __future__ import annotations

import argparse

from shears.config import add_config_args, config_from_args
from shears.deploy.config import DeployConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="deploy to OpenVINO IR (int8 weights, W8A8, W8A8 with the sparse kernel)",
        description="Convert a pruned model (with a sub-adapter merged under its mask, or kept "
        "separate) to OpenVINO IR for the CPU in the chosen precision, keeping every pruned "
        "zero exact; verify greedy tokens against PyTorch; report from the runtime's profiling "
        "counters which layers ran the sparse int8 kernel. Writes the IR, the tokenizer, "
        "README.md, deploy_results.json and deploy_config.json. Needs the deploy extra.",
    )
    add_config_args(p, DeployConfig)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from shears.deploy.run import run

    cfg = config_from_args(DeployConfig, args)
    print(run(cfg)["output_dir"])
    return 0
