"""Round trips on tiny sparse models: PyTorch -> OpenVINO IR -> the same greedy tokens, the same
zeros, a separate or masked-merged sub-adapter, an atomic output folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deploy_helpers import base_and_adapter, cfg, sparse_base
from export_helpers import our_logits

from shears.deploy import run as deploy_run
from shears.deploy.run import IR_XML, RESULTS, run
from shears.deploy.runtime import OVCausalLM


def _pruned_layers(result):
    """Per-matmul IR zero fraction of the decoder-block linears (the lm_head is not pruned)."""
    return {k: v for k, v in result["ir_sparsity_per_layer"].items() if ".layers." in k}


def test_fp32_round_trip_same_greedy_tokens_and_zeros(tmp_path, tiny_tokenizer):
    base = sparse_base(tmp_path, tiny_tokenizer)
    r = run(cfg(tmp_path / "out", model=str(base), precision="fp32"))
    v = r["verification"]
    assert v["greedy_tokens_match"], v
    assert v["rel_logit_diff"] < 1e-4  # same float32 math, other kernels
    pruned = _pruned_layers(r)
    assert len(pruned) == 2 * 7  # q k v o gate up down per block
    assert all(f == pytest.approx(0.5) for f in pruned.values())
    assert r["sparse_kernel"]["sparse_kernel_layers"] == 0
    saved = json.loads((tmp_path / "out" / RESULTS).read_text())
    assert saved["precision"] == "fp32"
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert (tmp_path / "out" / "deploy_config.json").is_file()


def test_int8_weights_close_to_pytorch_and_keeps_zeros(tmp_path, tiny_tokenizer):
    base = sparse_base(tmp_path, tiny_tokenizer)
    r = run(cfg(tmp_path / "out", model=str(base), precision="int8-weights"))
    v = r["verification"]
    # per-channel int8: each weight moves by at most half a step (max|row| / 254, ~0.4 % of the
    # row's largest weight); through two blocks and the head the largest of 257 logits moved
    # by 2.5 % of the logits' spread (measured); a broken conversion moves them by ~100 %
    assert v["rel_logit_diff"] < 0.1, v
    assert v["greedy_tokens_match"], v
    pruned = _pruned_layers(r)
    # quantization can only add zeros (tiny weights rounding to 0), never fill one
    assert all(0.5 <= f < 0.52 for f in pruned.values())
    assert r["bytes"]["ir_bin"] < 0.4 * _fp32_bytes(tmp_path, base)


def _fp32_bytes(tmp_path, base):
    return run(cfg(tmp_path / "fp32", model=str(base), precision="fp32", verify=False))["bytes"][
        "ir_bin"
    ]


def test_w8a8_keeps_zeros_and_reports_kernels(tmp_path, tiny_tokenizer):
    base = sparse_base(tmp_path, tiny_tokenizer)
    r = run(cfg(tmp_path / "out", model=str(base), precision="w8a8", nsamples=4, seqlen=16))
    assert all(f >= 0.5 for f in _pruned_layers(r).values())
    k = r["sparse_kernel"]
    assert k["matmul_layers"] > 0 and sum(k["exec_types"].values()) == k["matmul_layers"]
    assert any("I8" in t or "i8" in t for t in k["exec_types"])  # int8 matmuls did run
    assert (
        r["sparse_rate"] is None
        and "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE" not in (r["runtime_properties"])
    )


@torch.no_grad()
def test_separate_adapter_is_exact_and_base_stays_sparse(tmp_path, tiny_tokenizer):
    base, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    out = tmp_path / "out"
    r = run(cfg(out, adapter=str(adapter), sub_adapter="min", precision="fp32"))
    assert r["adapter"]["merge"] == "separate"
    ids = np.array(tiny_tokenizer("The answer is 42.")["input_ids"])
    config = {g: min(w) for g, w in _space_widths(adapter).items()}
    ref = our_logits(base, adapter, config, torch.tensor(ids)[None])[0].numpy()
    got = OVCausalLM(out / IR_XML, {"INFERENCE_PRECISION_HINT": "f32"}).logits(ids)[0]
    assert np.abs(got - ref).max() < 1e-4 * ref.std()
    # the adapter changed the function (B is random), yet the base matmuls kept their zeros
    bare = our_logits(base, adapter, {g: 0 for g in config}, torch.tensor(ids)[None])[0].numpy()
    assert np.abs(bare - ref).max() > 10 * np.abs(got - ref).max()
    base_layers = _pruned_layers(r)
    assert len(base_layers) == 14 and all(f == pytest.approx(0.5) for f in base_layers.values())
    adapted = len(r["uniform_lora"]["active_ranks"])
    assert adapted >= 2 and len(r["adapter_matmuls"]) == 2 * adapted  # A and B of each, apart
    assert (out / "lora_uniform" / "adapter_config.json").is_file()


def _space_widths(adapter):
    from shears.adapters.io import SuperAdapter

    return {g.name: g.widths for g in SuperAdapter.read(adapter).space.groups}


def test_mask_aware_adapter_is_merged_under_the_mask(tmp_path, tiny_tokenizer):
    _, adapter = base_and_adapter(tmp_path, tiny_tokenizer, sparse_adapter=True)
    r = run(cfg(tmp_path / "out", adapter=str(adapter), precision="fp32"))
    assert r["adapter"]["merge"] == "masked"
    assert r["adapter"]["merge_stats"]["zeros_lost"] == 0
    assert r["verification"]["greedy_tokens_match"]
    assert r["adapter_matmuls"] == [] and len(r["ir_sparsity_per_layer"]) == 15
    assert all(f == pytest.approx(0.5, abs=1e-3) for f in _pruned_layers(r).values())


def test_failure_leaves_no_output(tmp_path, tiny_tokenizer, monkeypatch):
    base = sparse_base(tmp_path, tiny_tokenizer)

    def boom(*a, **k):
        raise RuntimeError("profiling failed")

    monkeypatch.setattr(deploy_run, "profile", boom)
    with pytest.raises(RuntimeError, match="profiling failed"):
        run(cfg(tmp_path / "out", model=str(base), precision="fp32", verify=False))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_overwrite_replaces_only_with_flag(tmp_path, tiny_tokenizer):
    from shears.errors import ShearsError

    base = sparse_base(tmp_path, tiny_tokenizer)
    run(cfg(tmp_path / "out", model=str(base), precision="fp32", verify=False))
    with pytest.raises(ShearsError, match="already exists"):
        run(cfg(tmp_path / "out", model=str(base), precision="fp32", verify=False))
    r = run(cfg(tmp_path / "out", model=str(base), precision="fp32", verify=False, overwrite=True))
    assert r["precision"] == "fp32"
