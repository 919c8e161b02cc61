"""The elastic LoRA layer: r_max equals plain (PEFT) LoRA, sub-ranks are prefixes with the fixed
alpha / r_max scaling, gradients reach only the active slices, merge keeps sparsity."""

import copy

import pytest
import torch
from torch import nn

from conftest import tiny_model
from shears.adapters import (
    ElasticLoraConfig,
    ElasticLoRALinear,
    SearchSpace,
    SpaceConfig,
    elastic_layers,
)
from shears.adapters.elastic_lora import inject_elastic_lora, remove_elastic_lora


def _randomise_b(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in elastic_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.5)


def _elastic(arch="llama", widths=(8, 6, 4), alpha=16.0, **kw):
    model = tiny_model(arch)
    cfg = ElasticLoraConfig(alpha=alpha, dropout=0.0, **kw)
    space_cfg = SpaceConfig(widths=list(widths))
    if arch == "gpt2":
        cfg = ElasticLoraConfig(targets=["c_attn", "c_fc"], alpha=alpha, dropout=0.0)
        space_cfg = SpaceConfig(groups=[], widths=list(widths))
    space = SearchSpace.build(model, cfg, space_cfg)
    layers = inject_elastic_lora(model, space.modules, space.r_max, cfg.alpha, 0.0, **kw)
    _randomise_b(model)
    return model, space, layers, cfg


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_r_max_sub_adapter_equals_peft_lora(arch):
    from peft import LoraConfig, get_peft_model

    model, space, layers, cfg = _elastic(arch)
    ids = torch.randint(0, 128, (2, 12))
    space.apply(layers, space.maximal())
    ours = model(ids).logits

    base = tiny_model(arch)  # same seed -> same base weights
    peft_model = get_peft_model(
        base,
        LoraConfig(
            r=space.r_max, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=space.modules
        ),
    )
    with torch.no_grad():
        for name, layer in layers.items():
            mod = peft_model.base_model.model.get_submodule(name)
            mod.lora_A["default"].weight.copy_(layer.lora_A)
            mod.lora_B["default"].weight.copy_(layer.lora_B)
    peft_model.eval()
    ref = peft_model(input_ids=ids).logits
    assert torch.allclose(ours, ref, atol=1e-5)
    # the adapter does something: the plain base model differs
    assert not torch.allclose(ours, tiny_model(arch)(ids).logits, atol=1e-3)


def test_sub_rank_is_prefix_with_fixed_scaling():
    torch.manual_seed(0)
    base = nn.Linear(10, 7)
    layer = ElasticLoRALinear(copy.deepcopy(base), r_max=6, alpha=12.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 10)
    for r in (6, 4, 1, 0):
        layer.active_rank = r
        expect = base(x) + (12.0 / 6) * x @ layer.lora_A[:r].t() @ layer.lora_B[:, :r].t()
        assert torch.allclose(layer(x), expect, atol=1e-5), r
        assert torch.allclose(
            layer.delta_weight(), (12.0 / 6) * layer.lora_B[:, :r] @ layer.lora_A[:r]
        )


def test_different_configs_give_different_logits():
    model, space, layers, _ = _elastic()
    ids = torch.randint(0, 128, (2, 12))
    outs = {}
    for name in ("max", "heuristic", "min"):
        space.apply(layers, space.named_config(name))
        outs[name] = model(ids).logits
    assert not torch.allclose(outs["max"], outs["min"], atol=1e-4)
    assert not torch.allclose(outs["max"], outs["heuristic"], atol=1e-4)
    space.apply(layers, space.maximal())
    assert torch.equal(model(ids).logits, outs["max"])  # switching back is exact


def test_gradients_reach_only_active_slices():
    model, space, layers, _ = _elastic()
    config = space.sample(seed=3, step=0)
    config[space.groups[0].name] = 4  # make sure at least one group is below r_max
    space.apply(layers, config)
    model(torch.randint(0, 128, (2, 12)), labels=torch.randint(0, 128, (2, 12))).loss.backward()
    for name, r in space.module_ranks(config).items():
        layer = layers[name]
        assert layer.lora_A.grad[:r].abs().sum() > 0 and layer.lora_B.grad[:, :r].abs().sum() > 0
        assert torch.count_nonzero(layer.lora_A.grad[r:]) == 0, name
        assert torch.count_nonzero(layer.lora_B.grad[:, r:]) == 0, name
    frozen = [n for n, p in model.named_parameters() if "lora_" not in n]
    assert frozen and all(model.get_parameter(n).grad is None for n in frozen)
    assert all(not model.get_parameter(n).requires_grad for n in frozen)


def test_merge_unmerge_and_sparse_merge_keeps_zeros():
    torch.manual_seed(0)
    base = nn.Linear(16, 8, bias=False)
    with torch.no_grad():
        base.weight[base.weight.abs() < 0.1] = 0.0  # a sparse base
    zeros = base.weight == 0
    for sparse in (False, True):
        layer = ElasticLoRALinear(copy.deepcopy(base), r_max=4, alpha=8.0, sparse_adapter=sparse)
        with torch.no_grad():
            layer.lora_B.normal_()
        layer.active_rank = 2
        x = torch.randn(5, 16)
        before = layer(x)
        layer.merge()
        assert torch.allclose(layer(x), before, atol=1e-5)
        w = layer.base_layer.weight
        if sparse:
            assert torch.equal(w == 0, zeros)  # merged model exactly as sparse as the base
        else:
            assert (w == 0).sum() < zeros.sum()  # plain merge destroys sparsity
        with pytest.raises(RuntimeError, match="unmerge"):
            layer.active_rank = 3
        layer.unmerge()
        assert torch.allclose(layer.base_layer.weight, base.weight, atol=1e-6)


def test_sparse_adapter_delta_is_masked_in_forward():
    torch.manual_seed(0)
    base = nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        base.weight[:, :3] = 0.0
    layer = ElasticLoRALinear(copy.deepcopy(base), r_max=2, alpha=2.0, sparse_adapter=True)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.zeros(1, 6)
    x[0, :3] = 1.0  # only the pruned input columns are active -> no adapter contribution
    assert torch.allclose(layer(x), base(x), atol=1e-6)


def test_half_base_with_fp32_adapter():
    base = nn.Linear(8, 4).to(torch.bfloat16)
    layer = ElasticLoRALinear(base, r_max=2, alpha=4.0, dtype=torch.float32)
    assert layer.lora_A.dtype == torch.float32 and base.weight.dtype == torch.bfloat16
    y = layer(torch.randn(3, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.lora_B.grad is not None and layer.lora_B.grad.dtype == torch.float32


def test_remove_restores_plain_linears():
    model, _, _, _ = _elastic()
    remove_elastic_lora(model)
    assert not elastic_layers(model)
    assert isinstance(model.model.layers[0].self_attn.q_proj, nn.Linear)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="r_max"):
        ElasticLoRALinear(nn.Linear(2, 2), r_max=0, alpha=1.0)
    with pytest.raises(TypeError, match="nn.Linear"):
        ElasticLoRALinear(nn.Embedding(4, 2), r_max=2, alpha=1.0)
    layer = ElasticLoRALinear(nn.Linear(2, 2), r_max=2, alpha=1.0)
    with pytest.raises(ValueError, match="outside"):
        layer.active_rank = 3


def _held_tensors(layer: ElasticLoRALinear) -> list[str]:
    """Names of the plain tensor attributes a layer holds besides its parameters and buffers."""
    return [k for k, v in vars(layer).items() if isinstance(v, torch.Tensor)]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_merge_keeps_no_delta_copy_and_unmerge_is_exact(sparse, transposed):
    """merge() holds no (out, in) copy of the delta; unmerge() recomputes it with the same mask,
    even where the merge turned a base non-zero into an exact zero (which leaves the mask)."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    out_f, in_f = 8, 16
    base = Conv1D(out_f, in_f) if transposed else nn.Linear(in_f, out_f, bias=False)
    with torch.no_grad():
        base.weight.normal_()
        base.weight[base.weight.abs() < 0.5] = 0.0  # a sparse base
    w0 = base.weight.detach().clone()
    w_oi = w0.t() if transposed else w0  # (out, in)
    layer = ElasticLoRALinear(copy.deepcopy(base), r_max=2, alpha=2.0, sparse_adapter=sparse)
    i, j = (w_oi != 0).nonzero()[0].tolist()  # a non-zero base weight that the delta cancels
    with torch.no_grad():
        layer.lora_A.zero_()
        layer.lora_B.zero_()
        layer.lora_A[0, j] = 1.0
        layer.lora_B[i, 0] = -float(w_oi[i, j])  # scaling alpha / r_max = 1: delta[i, j] = -w
        layer.lora_A[1].normal_()
        layer.lora_B[:, 1].normal_()
        layer.lora_B[i, 1] = 0.0  # row i's delta is exactly -w[i, j] at column j
    x = torch.randn(5, in_f)
    before = layer(x)
    layer.merge()
    merged_w = layer.base_layer.weight
    assert float((merged_w.t() if transposed else merged_w)[i, j]) == 0.0
    assert _held_tensors(layer) == [] or all(
        getattr(layer, k).numel() < merged_w.numel() // 4 for k in _held_tensors(layer)
    ), "merge kept a full copy of the delta"
    assert torch.allclose(layer(x), before, atol=1e-5)
    layer.unmerge()
    assert not layer.merged
    assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6)
    assert torch.equal(layer.base_layer.weight == 0, w0 == 0)  # the zeroed weight is back
    assert torch.allclose(layer(x), before, atol=1e-5)
    # merge -> unmerge twice more: no drift
    for _ in range(2):
        layer.merge(keep_sparsity=True)
        layer.unmerge()
    assert torch.allclose(layer.base_layer.weight, w0, atol=1e-6)


def test_bf16_base_merge_unmerge_roundtrip():
    torch.manual_seed(0)
    base = nn.Linear(16, 8, bias=False).to(torch.bfloat16)
    w0 = base.weight.detach().clone()
    layer = ElasticLoRALinear(base, r_max=4, alpha=8.0, sparse_adapter=True, dtype=torch.float32)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(3, 16, dtype=torch.bfloat16)
    y = layer(x)  # fp32 adapter on a bf16 base: cast at the matmul
    assert y.dtype == torch.bfloat16
    layer.merge()
    assert torch.allclose(layer(x).float(), y.float(), atol=0.1)
    layer.unmerge()
    # exactly what adding, then subtracting the same bf16 delta gives (bf16 rounds w + d)
    d = layer.delta_weight().to(torch.bfloat16)
    assert torch.equal(layer.base_layer.weight, (w0 + d) - d)
    assert not _held_tensors(layer)
