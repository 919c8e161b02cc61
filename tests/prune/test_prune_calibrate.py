"""The engine: capture of block calls, sequential feeding of pruned outputs, every architecture."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import ARCHS, tiny_config, tiny_model
from shears.models import find_decoder_blocks, find_targets
from shears.prune import PruneConfig
from shears.prune.calibrate import (
    InputStatsHooks,
    SequentialPruner,
    call_block,
    capture_block_calls,
    make_stats,
)


def _three_block(arch="llama", seed=0):
    cfg = tiny_config(arch)
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(cfg, key):
            setattr(cfg, key, 3)
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = (cfg.layer_types * 3)[:3]
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def _dense_stats(model, targets, ids):
    """Reference: statistics from one ordinary forward of the unpruned model."""
    hooks = InputStatsHooks(targets, lambda m: make_stats("wanda", m))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    hooks.remove()
    return {n: s.sq_sum.clone() for n, s in hooks.stats.items()}


def _sequential_stats(model, targets, ids, sparsity, method="wanda", batch_size=3):
    """Statistics the engine collects, in full precision (compared with a plain fp32 forward)."""
    seen = {}

    def keep(idx, stats):
        for n, s in stats.items():
            seen[n] = s.sq_sum.clone()

    cfg = PruneConfig(method=method, sparsity=sparsity, batch_size=batch_size, precision="fp32")
    SequentialPruner(model, targets, cfg, progress=False, on_block_stats=keep).run(ids)
    return seen


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_replays_the_model_exactly(arch):
    """Replaying the captured calls block by block gives the model's own last hidden state
    (Gemma-3 included: seqlen 40 > its sliding window 16, so its two mask kinds differ)."""
    model = tiny_model(arch)
    _, blocks = find_decoder_blocks(model)
    ids = torch.randint(0, 128, (5, 40))
    hidden, calls = capture_block_calls(model, blocks, ids, batch_size=2)
    assert len(hidden) == 3 and [h.shape[0] for h in hidden] == [2, 2, 1]
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        for k, h in enumerate(hidden):
            assert torch.allclose(h, ref[0][2 * k : 2 * k + 2], atol=1e-6)
            for i, blk in enumerate(blocks[:-1]):
                h = call_block(blk, h, calls[k][i])
                assert torch.allclose(h, ref[i + 1][2 * k : 2 * k + 2], atol=1e-5), (k, i)
    # blocks are restored: a normal forward still works and matches
    with torch.no_grad():
        again = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
    assert torch.allclose(again[-1], ref[-1])


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_sparsity_statistics_equal_a_dense_pass(arch):
    model = tiny_model(arch)
    targets = find_targets(model)
    ids = torch.randint(0, 128, (5, 40))
    dense = _dense_stats(model, targets, ids)
    seq = _sequential_stats(model, targets, ids, sparsity=0.0)
    assert seq.keys() == dense.keys()
    for n in dense:
        assert torch.allclose(seq[n], dense[n], rtol=1e-4, atol=1e-4), n


def test_sequential_calibration_feeds_pruned_outputs_forward():
    model = _three_block("llama")
    targets = find_targets(model)
    prefix, _ = find_decoder_blocks(model)
    ids = torch.randint(0, 128, (6, 24))
    twin = _three_block("llama")  # same weights, never pruned
    dense = _dense_stats(twin, find_targets(twin), ids)
    seq = _sequential_stats(model, targets, ids, sparsity=0.6)
    q0, q2 = f"{prefix}.0.self_attn.q_proj", f"{prefix}.2.self_attn.q_proj"
    # block 0 sees the embeddings either way; block 2 sees outputs of pruned blocks 0 and 1
    assert torch.allclose(seq[q0], dense[q0], rtol=1e-5)
    assert not torch.allclose(seq[q2], dense[q2], rtol=1e-2)
    # inside block 0, o_proj/down_proj inputs come from the still-dense block 0 (one dense pass)
    d0 = f"{prefix}.0.mlp.down_proj"
    assert torch.allclose(seq[d0], dense[d0], rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_every_arch_prunes_exact_rows(arch, method):
    model = tiny_model(arch)
    targets = find_targets(model)
    ids = torch.randint(0, 128, (4, 24))
    cfg = PruneConfig(method=method, sparsity=0.5, batch_size=3)
    info = SequentialPruner(model, targets, cfg, progress=False).run(ids)
    assert list(info) == list(targets)
    for name, mod in targets.items():
        from shears.models import weight_out_in

        w = weight_out_in(mod)
        assert ((w == 0).sum(1) == w.shape[1] // 2).all(), name
        assert info[name]["sparsity"] == pytest.approx(0.5)


def test_nm_pattern_through_engine():
    model = tiny_model("qwen2")
    targets = find_targets(model)
    ids = torch.randint(0, 128, (4, 16))
    SequentialPruner(model, targets, PruneConfig(pattern="2:4"), progress=False).run(ids)
    for mod in targets.values():
        w = mod.weight
        assert ((w == 0).reshape(w.shape[0], -1, 4).sum(2) == 2).all()


def test_offload_activations_gives_same_result():
    ids = torch.randint(0, 128, (4, 16))
    a, b = tiny_model("llama"), tiny_model("llama")
    SequentialPruner(a, find_targets(a), PruneConfig(), progress=False).run(ids)
    offload = PruneConfig(offload_activations=True)
    SequentialPruner(b, find_targets(b), offload, progress=False).run(ids)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), na


def test_only_targets_are_pruned_and_later_blocks_skipped():
    model = tiny_model("llama")
    before = {n: p.clone() for n, p in model.named_parameters()}
    targets = find_targets(model, ["re:.*layers\\.0\\.mlp\\.up_proj"])
    SequentialPruner(model, targets, PruneConfig(), progress=False).run(
        torch.randint(0, 128, (2, 8))
    )
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert changed == ["model.layers.0.mlp.up_proj.weight"]


def test_gemma3_blocks_get_their_own_attention_mask():
    """Sliding-window and full-attention blocks are called with different masks; each block's
    own call is recorded and replayed (block 0's arguments reused for block 1 would be wrong)."""
    cfg = tiny_config("gemma3")
    cfg.layer_types = ["sliding_attention", "full_attention"]
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    _, blocks = find_decoder_blocks(model)
    ids = torch.randint(0, 128, (2, 40))  # longer than the sliding window (16)
    hidden, calls = capture_block_calls(model, blocks, ids, batch_size=2)
    m0, m1 = calls[0][0].kwargs["attention_mask"], calls[0][1].kwargs["attention_mask"]
    assert m0 is not None and m1 is not None and not torch.equal(m0, m1)
    with torch.no_grad():
        ref = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states
        h1 = call_block(blocks[0], hidden[0], calls[0][0])
        good = call_block(blocks[1], h1, calls[0][1])
        wrong = call_block(blocks[1], h1, calls[0][0])
    assert torch.allclose(good, ref[2], atol=1e-5) or torch.allclose(
        model.model.norm(good), ref[2], atol=1e-5
    )
    assert not torch.allclose(good, wrong, atol=1e-4)
