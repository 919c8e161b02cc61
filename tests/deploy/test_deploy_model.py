"""A deploy folder runs through shears' own evaluation code (generation, whole-sequence logits)
and answers as the PyTorch model does."""

from __future__ import annotations

import pytest
import torch
from deploy_helpers import cfg, sparse_base
from transformers import AutoModelForCausalLM

from shears.deploy.model import DeployedModel, is_deployed, load_deployed
from shears.deploy.run import run
from shears.errors import ShearsError
from shears.evaluate.generate import generate


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tiny_tokenizer_module):
    root = tmp_path_factory.mktemp("dep")
    base = sparse_base(root, tiny_tokenizer_module)
    run(cfg(root / "out", model=str(base), precision="fp32", verify=False))
    return base, root / "out"


@pytest.fixture(scope="module")
def tiny_tokenizer_module():
    from conftest import build_tiny_tokenizer

    return build_tiny_tokenizer()


def test_generate_matches_pytorch(deployed):
    base, out = deployed
    model, tok = load_deployed(out)
    assert is_deployed(out) and not is_deployed(base)
    ref_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    prompts = ["The answer is", "Below is an instruction that", "42"]  # different lengths
    got = generate(model, tok, prompts, style="alpaca", batch_size=2, max_new_tokens=6)
    ref = generate(ref_model, tok, prompts, style="alpaca", batch_size=2, max_new_tokens=6)
    assert got.texts == ref.texts and got.new_tokens == ref.new_tokens > 0


@torch.no_grad()
def test_forward_logits_with_left_padding(deployed):
    base, out = deployed
    model = DeployedModel(out, {"INFERENCE_PRECISION_HINT": "f32"})
    ref_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ids = torch.tensor([[0, 0, 5, 9, 17], [3, 4, 5, 9, 17]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    got = model(input_ids=ids, attention_mask=mask).logits
    ref = ref_model(input_ids=ids[1:]).logits
    torch.testing.assert_close(got[1:], ref, rtol=1e-4, atol=1e-4)
    ref0 = ref_model(input_ids=ids[:1, 2:]).logits
    torch.testing.assert_close(got[:1, 2:], ref0, rtol=1e-4, atol=1e-4)
    assert (got[0, :2] == 0).all()


def test_kv_cache_scoring_is_refused_clearly(deployed):
    model = DeployedModel(deployed[1])
    with pytest.raises(ShearsError, match="whole sequences only"):
        model(input_ids=torch.tensor([[1, 2]]), use_cache=True)


def test_not_a_deploy_folder(tmp_path):
    with pytest.raises(ShearsError, match="not a `shears deploy` output"):
        DeployedModel(tmp_path)


def test_shears_eval_runs_the_deployed_model(deployed, tmp_path):
    """``shears eval --model DEPLOYED`` scores the IR (through ``load_model``) and gives the same
    predictions as the PyTorch model it came from."""
    import json

    from shears.cli import main
    from shears.models import load_model

    base, out = deployed
    model, _ = load_model(str(out))
    assert isinstance(model, DeployedModel)
    task = tmp_path / "t.json"
    task.write_text(json.dumps([{"instruction": "The answer is", "input": "", "answer": "42"}] * 2))
    preds = {}
    for name, spec in (("ov", out), ("pt", base)):
        dest = tmp_path / name
        argv = ["eval", "--model", str(spec), "--tasks", f"math:{task}", "--max-new-tokens", "4"]
        assert main([*argv, "--output-dir", str(dest), "--device", "cpu"]) == 0
        lines = (dest / "predictions.jsonl").read_text().splitlines()
        preds[name] = [json.loads(x)["output"] for x in lines]
    assert preds["ov"] == preds["pt"] and len(preds["ov"]) == 2 and all(preds["ov"])
    params = json.loads((tmp_path / "ov" / "eval_results.json").read_text())["parameters"]
    assert params["parameters"] is None and params["deployed"] is True  # not the wrapper's 1
    ir = json.loads((out / "deploy_results.json").read_text())["ir_sparsity"]["sparsity"]
    assert params["linear_sparsity"] == ir > 0.25  # the base's zeros, counted in the IR
