"""Every stage command takes ``--config FILE``, ``--set KEY=VALUE`` and its flags, in that order
of precedence, through one helper (``shears.config.add_config_args`` / ``config_from_args``)."""

from __future__ import annotations

import importlib
import json

import pytest

from shears.cli import build_parser
from shears.cli.train import build_config
from shears.config import config_from_args
from shears.errors import ShearsError

# command -> (config class, the arguments its config needs to be valid)
COMMANDS = {
    "prune": ("shears.prune.config:PruneConfig", []),
    "search": ("shears.search.config:SearchConfig", ["--adapter", "a"]),
    "eval": ("shears.evaluate.config:EvalConfig", []),
    "export": ("shears.export.config:ExportConfig", ["--adapter", "a"]),
    "deploy": ("shears.deploy.config:DeployConfig", ["--model", "m"]),
    "generate": ("shears.generate.config:GenerateConfig", ["--prompt", "hi"]),
}


def _cls(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"output_dir": "from-file"}))
    return str(path)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "extra, expected",
    [
        ([], "from-file"),
        (["--set", "output_dir=from-set"], "from-set"),
        (["--set", "output_dir=from-set", "--output-dir", "from-flag"], "from-flag"),
    ],
)
def test_file_then_set_then_flags(command, extra, expected, config_file):
    spec, needed = COMMANDS[command]
    args = build_parser().parse_args([command, "--config", config_file, *needed, *extra])
    assert config_from_args(_cls(spec), args).output_dir == expected


def test_train_set_reaches_sections_and_parses_values(config_file):
    argv = ["train", "--config", config_file, "--set", "space.widths=[8,4]", "--set", "lr=1e-4"]
    argv += ["--set", "space.groups=q_proj,k_proj;up_proj"]
    cfg = build_config(build_parser().parse_args(argv))
    assert cfg.output_dir == "from-file" and cfg.space.widths == [8, 4] and cfg.lr == 1e-4
    assert cfg.space.groups == [["q_proj", "k_proj"], ["up_proj"]]


def test_a_set_without_equals_is_one_clear_error(config_file):
    args = build_parser().parse_args(["prune", "--config", config_file, "--set", "sparsity"])
    with pytest.raises(ShearsError, match="'sparsity' must look like key.sub=value"):
        config_from_args(_cls(COMMANDS["prune"][0]), args)
