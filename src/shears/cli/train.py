"""``shears train``: NLS training of an elastic LoRA super-adapter (a thin layer over
:func:`shears.train.run_train`). Every flag comes from ``TrainConfig`` / ``SpaceConfig``."""

from __future__ import annotations

import argparse
import json
import sys

from shears.adapters.search_space import SpaceConfig
from shears.config import add_dataclass_args, dataclass_from_args, from_dict, load_config_file
from shears.errors import ShearsError

SPACE_FIELDS = ("targets", "groups", "widths", "alpha", "dropout", "sparse_adapter", "r_max")


def register(sub) -> None:
    from shears.train.config import TrainConfig

    p = sub.add_parser(
        "train",
        help="train an elastic LoRA super-adapter with NLS",
        description="Train an elastic LoRA super-adapter (Shears stage 2): every optimizer step "
        "trains one randomly sampled sub-adapter. Works on `shears prune` output and on any "
        "model. Scale out with `accelerate launch -m shears train ...` or `torchrun`.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON file of these settings (search space under a `space:` key); flags given "
        "on the command line override it",
    )
    p.add_argument(
        "--space-config",
        metavar="FILE",
        help="YAML/JSON file of the search space (targets, groups, widths, alpha, dropout, ...)",
    )
    add_dataclass_args(p, TrainConfig, exclude=("space",))
    g = p.add_argument_group(
        "search space",
        "groups: patterns per decoder block sharing one rank, ';' between groups and ',' inside "
        "one, e.g. --groups 'q_proj,k_proj,v_proj;up_proj;down_proj'; --groups '' gives one "
        "group per module",
    )
    add_dataclass_args(g, SpaceConfig)
    p.set_defaults(func=run)


def _parse_groups(value):
    if isinstance(value, str):
        return [
            [p.strip() for p in grp.split(",") if p.strip()]
            for grp in value.split(";")
            if grp.strip()
        ]
    return value


def _parse_fields(value):
    """``instruction=question,output=answer`` or a JSON object -> dict."""
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ShearsError(f"--data-fields is not valid JSON: {exc}") from exc
    out = {}
    for item in filter(None, (s.strip() for s in value.split(","))):
        if "=" not in item:
            raise ShearsError(f"--data-fields item {item!r} must look like instruction=question")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build_config(args: argparse.Namespace):
    """TrainConfig from ``--config`` < ``--space-config`` < command-line flags."""
    from shears.train.config import TrainConfig

    base = load_config_file(args.config) if args.config else {}
    space = base.pop("space", None) or {}
    if not isinstance(space, dict):
        raise ShearsError("config key 'space' must be a mapping of search-space settings")
    if args.space_config:
        data = load_config_file(args.space_config)
        space = {**space, **(data["space"] if set(data) == {"space"} else data)}
    for name in SPACE_FIELDS:
        if hasattr(args, name):
            space[name] = getattr(args, name)
    if "groups" in space:
        space["groups"] = _parse_groups(space["groups"])
    if hasattr(args, "data_fields"):
        args.data_fields = _parse_fields(args.data_fields)
    base["space"] = from_dict(SpaceConfig, space, prefix="space.")
    return dataclass_from_args(TrainConfig, args, base=base)


def run(args: argparse.Namespace) -> int:
    from shears.train import run_train

    cfg = build_config(args)
    results = run_train(cfg)
    keys = ("global_steps", "final_loss", "train_runtime_s", "train_samples_per_second")
    summary = {"output_dir": cfg.output_dir, **{k: results.get(k) for k in keys}}
    summary["adapter_parameters"] = results.get("adapter_parameters")
    print(json.dumps(summary), file=sys.stdout)
    return 0
