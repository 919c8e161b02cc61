"""Renamed settings: the former names still work as config keys and flags, with a deprecation
warning, and a finished stage keeps its digest."""

import argparse
import hashlib
import json
import logging

import pytest

from shears.config import add_dataclass_args, dataclass_from_args, from_dict, to_dict
from shears.errors import ShearsError
from shears.evaluate.config import EvalConfig
from shears.pipeline.ledger import NEUTRAL_KEYS, stage_digest
from shears.prune.config import PruneConfig

ORIGINAL = {"data_config": "dataset_config", "data_split": "dataset_split"}


def test_old_config_keys(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = from_dict(PruneConfig, {"dataset_config": "en", "dataset_split": "validation"})
    assert (cfg.data_config, cfg.data_split) == ("en", "validation")
    assert "config key 'dataset_config' is deprecated; use 'data_config'" in caplog.text
    with caplog.at_level(logging.WARNING):
        assert from_dict(EvalConfig, {"ppl_max_tokens": 99}, prefix="eval.").ppl_tokens == 99
    assert "config key 'eval.ppl_max_tokens' is deprecated; use 'eval.ppl_tokens'" in caplog.text
    with pytest.raises(ShearsError, match="'data_config' are the same setting; give only"):
        from_dict(PruneConfig, {"dataset_config": "en", "data_config": "de"})


def test_old_flags(caplog):
    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, PruneConfig)
    assert "--dataset-config" not in parser.format_help()  # hidden
    args = parser.parse_args(["--dataset-config", "en", "--data-split", "validation"])
    with caplog.at_level(logging.WARNING):
        cfg = dataclass_from_args(PruneConfig, args, {"data_config": "de", "dataset_split": "x"})
    assert (cfg.data_config, cfg.data_split) == ("en", "validation")  # flags beat the file
    assert "--dataset-config is deprecated; use --data-config" in caplog.text
    assert "config key 'dataset_split' is deprecated" in caplog.text
    args = parser.parse_args(["--dataset-config", "en", "--data-config", "de"])
    with pytest.raises(ShearsError, match="--dataset-config and --data-config are the same"):
        dataclass_from_args(PruneConfig, args)


def test_renamed_settings_keep_the_stage_digest():
    cfg = PruneConfig(data_config="en", data_split="validation")
    # the settings as a run recorded before the renames (and before the OWL fields) saw them
    added = {"sparsity_profile", "owl_m", "owl_lambda", "precision", "offload", "offload_dir"}
    settings = {
        ORIGINAL.get(k, k): v
        for k, v in to_dict(cfg).items()
        if k not in NEUTRAL_KEYS and k not in added
    }
    text = json.dumps({"settings": settings, "upstream": ["x"]}, sort_keys=True, default=str)
    assert stage_digest(cfg, ["x"]) == hashlib.sha1(text.encode()).hexdigest()[:16]


def test_old_keys_in_a_run_config(caplog):
    from shears.pipeline import load_run_config
    from shears.pipeline.plan import build_plan

    overrides = ["prune.dataset_config=en", "eval.ppl_max_tokens=5"]
    with caplog.at_level(logging.WARNING):
        plan = build_plan(load_run_config(None, ["run_dir=runs/x", *overrides]))
    assert plan.prune.data_config == "en"
    assert {e.ppl_tokens for e in plan.evals.values()} == {5}
    assert caplog.text.count("config key 'eval.ppl_max_tokens' is deprecated") == 1
