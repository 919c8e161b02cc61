"""``shears train``: NLS training of an elastic LoRA super-adapter (a thin layer over
:func:`shears.train.run_train`). Every flag comes from ``TrainConfig`` and its sub-configs
(``ElasticLoraConfig``, ``SpaceConfig``)."""

from __future__ import annotations

import argparse
import json
import sys

from shears.config import add_config_args, apply_overrides, dataclass_from_args, load_config_file
from shears.errors import ShearsError


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
        "--space-config",
        metavar="FILE",
        help="YAML/JSON file of the adapter and its search space (targets, groups, widths, "
        "alpha, dropout, ...; flat or in `adapter:` / `space:` sections); overrides --config",
    )
    add_config_args(
        p,
        TrainConfig,
        config_help="YAML/JSON file of these settings (the adapter under an `adapter:` key, its "
        "search space under `space:`); --space-config, --set and flags override it",
    )
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
    """TrainConfig from ``--config`` < ``--space-config`` < ``--set`` < command-line flags."""
    from shears.adapters.config import read_adapter_file, split_sections
    from shears.train.config import TrainConfig

    base = load_config_file(args.config) if args.config else {}
    if args.space_config:
        base = split_sections(base)  # the --config file in the current layout, then the file
        for name, values in read_adapter_file(args.space_config).items():
            below = base.get(name) or {}
            if not isinstance(below, dict):
                raise ShearsError(f"config key {name!r} must be a mapping of settings")
            base[name] = {**below, **values}
    base = apply_overrides(base, args.overrides)  # --set, before groups are parsed below
    if hasattr(args, "space.groups"):
        setattr(args, "space.groups", _parse_groups(getattr(args, "space.groups")))
    if isinstance(base.get("space"), dict) and "groups" in base["space"]:
        base["space"]["groups"] = _parse_groups(base["space"]["groups"])
    if hasattr(args, "data_fields"):
        args.data_fields = _parse_fields(args.data_fields)
    return dataclass_from_args(TrainConfig, args, base=base)


def run(args: argparse.Namespace) -> int:
    from shears.train import run_train

    cfg = build_config(args)
    result = run_train(cfg)
    keys = ("global_steps", "final_loss", "train_runtime_s", "train_samples_per_second")
    summary = {"output_dir": cfg.output_dir, **{k: getattr(result, k) for k in keys}}
    summary["adapter_parameters"] = result.adapter_parameters
    print(json.dumps(summary), file=sys.stdout)
    return 0
