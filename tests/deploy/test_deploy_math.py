"""Pure functions of shears.deploy: the causal mask, uniform-rank padding (exact with stock
PEFT), the kernel rate, CPU flags and the profiling summary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from deploy_helpers import base_and_adapter
from export_helpers import mixed_config, our_logits, stock_peft_logits

from shears.deploy.adapter import pad_lora, write_uniform_lora
from shears.deploy.convert import causal_mask
from shears.deploy.cpu import check_rate, parse_cpuinfo, rate_from_sparsity
from shears.deploy.run import compare
from shears.deploy.runtime import kernel_report, min_pruned_sparsity
from shears.errors import ShearsError


def test_causal_mask_decode_and_prefill():
    m = causal_mask(3, 2)  # 3 queries at positions 2, 3, 4 over 5 keys
    assert m.shape == (1, 1, 3, 5) and m.dtype == np.float32
    seen = m[0, 0] == 0
    assert seen.tolist() == [
        [True, True, True, False, False],
        [True, True, True, True, False],
        [True, True, True, True, True],
    ]
    assert np.isfinite(m).all() and m.min() < -1e30
    assert (causal_mask(1, 7)[0, 0] == 0).all()  # a decode step sees everything


def test_pad_lora_is_exact():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 10, generator=gen), torch.randn(6, 3, generator=gen)
    a_pad, b_pad = pad_lora(a, b, 8)
    assert a_pad.shape == (8, 10) and b_pad.shape == (6, 8)
    assert torch.equal(b_pad @ a_pad, b @ a)  # exact: the padding multiplies zeros
    with pytest.raises(ValueError):
        pad_lora(a, b, 2)


@torch.no_grad()
def test_uniform_rank_lora_loads_in_stock_peft_and_matches(tmp_path, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from shears.adapters.io import SuperAdapter

    base, adapter = base_and_adapter(tmp_path, tiny_tokenizer)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    loaded = SuperAdapter.load(model, adapter, dropout=0.0)
    config = mixed_config(loaded.space)
    loaded.space.apply(loaded.layers, config)
    ranks = {layer.active_rank for layer in loaded.layers.values()}
    assert len(ranks) > 1  # really a mixed-rank sub-adapter
    info = write_uniform_lora(loaded.layers, tmp_path / "uniform", str(base))
    assert info["rank"] == loaded.space.r_max
    ids = torch.tensor([tiny_tokenizer("The answer is 42. Below is")["input_ids"]])
    ref = our_logits(base, adapter, config, ids)
    got, peft_model = stock_peft_logits(base, tmp_path / "uniform", ids)
    assert {m.r["default"] for m in peft_model.modules() if hasattr(m, "r")} == {info["rank"]}
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    bare = our_logits(base, adapter, {g: 0 for g in config}, ids)
    assert (bare - ref).abs().max() > 1e-2  # the adapter matters: the check can fail


def test_rate_range():
    assert check_rate(0.5) == 0.5 and check_rate(1) == 1.0
    for bad in (0.0, -0.1, 1.01, math.nan, math.inf):
        with pytest.raises(ShearsError, match="out of range"):
            check_rate(bad)


def test_rate_from_sparsity():
    assert rate_from_sparsity(0.5) == pytest.approx(0.49)
    assert rate_from_sparsity(0.7012) == pytest.approx(0.6912)
    with pytest.raises(ShearsError, match="no pruned matmul"):
        rate_from_sparsity(None)
    layers = {
        "a": {"shape": [4, 4], "zeros": 8},  # 0.5
        "b": {"shape": [4, 4], "zeros": 12},  # 0.75
        "head": {"shape": [4, 4], "zeros": 0},  # unpruned: ignored
    }
    assert min_pruned_sparsity({"layers": layers}) == 0.5


def test_parse_cpuinfo():
    text = "processor\t: 0\nmodel name\t: Xeon X\nflags\t\t: fpu avx512f amx_tile amx_int8\n"
    info = parse_cpuinfo(text + text.replace("Xeon X", "other"))
    assert info["model"] == "Xeon X"
    assert {"amx_tile", "amx_int8", "avx512f"} <= set(info["flags"])


def test_kernel_report_counts_sparse_from_exec_types():
    rows = [
        {
            "node": "q",
            "type": "FullyConnected",
            "exec_type": "brgemm_avx512_amx_sparse_I8",
            "time_us": 5.0,
        },
        {
            "node": "k",
            "type": "FullyConnected",
            "exec_type": "brgemm_avx512_amx_I8",
            "time_us": 7.0,
        },
        {
            "node": "w",
            "type": "FullyConnectedCompressed",
            "exec_type": "brgemm_avx512_f32",
            "time_us": 1.0,
        },
        {"node": "n", "type": "RMS", "exec_type": "jit_sparse_looking_name", "time_us": 1.0},
    ]
    r = kernel_report(rows)
    assert r["matmul_layers"] == 3 and r["sparse_kernel_layers"] == 1 and r["sparse_kernel_used"]
    assert r["sparse_time_us"] == 5.0 and r["matmul_time_us"] == 13.0
    assert [x["sparse"] for x in r["layers"]] == [True, False, False]
    assert not kernel_report(rows[1:])["sparse_kernel_used"]


def test_compare_finds_first_mismatch():
    logits = np.array([0.0, 1.0, 3.0])
    v = compare(([1, 2, 3, 4], logits), [1, 2, 9, 4], logits + 0.5)
    assert not v["greedy_tokens_match"] and v["first_mismatch"] == 2
    assert v["max_abs_logit_diff"] == pytest.approx(0.5)
    assert compare(([1, 2], logits), [1, 2], logits)["greedy_tokens_match"]
