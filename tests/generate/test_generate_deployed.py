"""``shears generate --model DEPLOYED``: an fp32 OpenVINO IR from ``shears deploy`` generates the
same greedy tokens as the PyTorch model it was deployed from; sampling and --adapter are refused
in one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy"))
from deploy_helpers import cfg, sparse_base  # noqa: E402

from input_helpers import one_error  # noqa: E402
from shears.generate.config import GenerateConfig  # noqa: E402
from shears.generate.run import run  # noqa: E402

PROMPTS = ["What is 2 + 2?", "Below is an instruction that describes a task, in more words.", "Hi"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    from conftest import build_tiny_tokenizer
    from shears.deploy.run import run as deploy

    root = tmp_path_factory.mktemp("gen_dep")
    base = sparse_base(root, build_tiny_tokenizer())
    deploy(cfg(root / "out", model=str(base), precision="fp32", verify=False))
    return str(base), str(root / "out")


def test_deployed_ir_generates_the_pytorch_tokens(deployed):
    base, out = deployed
    kw = {"prompts": PROMPTS, "max_new_tokens": 8, "batch_size": 2, "precision": "fp32"}
    ref, got = run(GenerateConfig(model=base, **kw)), run(GenerateConfig(model=out, **kw))
    pairs = [(r["completion"], r["new_tokens"]) for r in ref["completions"]]
    assert [(r["completion"], r["new_tokens"]) for r in got["completions"]] == pairs
    assert got["new_tokens"] > 0 and got["parameters"]["deployed"] is True


def test_sampling_on_a_deployed_model_is_refused(deployed, capsys):
    one_error(capsys, "generate", "--model", deployed[1], "--prompt", "a", "--temperature", "0.8",
              match="generates greedily only")  # fmt: skip


def test_adapter_on_a_deployed_model_is_refused(deployed, capsys, tmp_path):
    (tmp_path / "adapter").mkdir()
    one_error(capsys, "generate", "--model", deployed[1], "--prompt", "a", "--adapter",
              str(tmp_path / "adapter"), match="cannot be added to the deployed model")  # fmt: skip
