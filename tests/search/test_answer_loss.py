import numpy as np
import pytest
import torch
import torch.nn.functional as F
from search_helpers import random_batches, tiny_super_adapter

from shears.data.tokenize import encode_example
from shears.errors import ShearsError
from shears.search import AnswerLossObjective, CachedEvaluator, encode_validation, hill_climb
from shears.search.space_ops import neighbours


def test_config_switch_changes_output_and_cache_prevents_second_evaluation():
    model, layers, space = tiny_super_adapter()
    ids = torch.arange(1, 11).unsqueeze(0)
    space.apply(layers, space.maximal())
    with torch.no_grad():
        out_max = model(input_ids=ids).logits
    space.apply(layers, space.minimal())
    with torch.no_grad():
        out_min = model(input_ids=ids).logits
    assert not torch.allclose(out_max, out_min)  # a width switch changes the output

    obj = AnswerLossObjective(model, layers, space, random_batches())
    calls = []
    orig = obj.batch_nll
    obj.batch_nll = lambda b: (calls.append(1), orig(b))[1]
    ev = CachedEvaluator(space, obj)
    a = ev(space.maximal())
    n = len(calls)
    b = ev(space.minimal())
    assert a != b
    assert ev(space.maximal()) == a and len(calls) == 2 * n  # no forward for a cached config
    assert obj.calls == 2


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2", "opt"])
def test_accelerated_loss_equals_naive(arch):
    model, layers, space = tiny_super_adapter(arch)
    batches = random_batches()
    naive = AnswerLossObjective(
        model, layers, space, batches, reuse_prefix=False, gather_logits=False
    )
    fast = AnswerLossObjective(model, layers, space, batches)
    h = space.heuristic()
    fast.set_anchor(h)
    configs = [h, space.maximal(), space.minimal()] + [c for _, _, c in neighbours(space, h)]
    for c in configs:
        assert fast(c) == pytest.approx(naive(c), rel=1e-6, abs=1e-6)
    assert fast._gathered  # the head ran on answer positions only
    full = fast.n_blocks * len(configs)
    assert fast.blocks_run < full  # and blocks below a change were reused
    # moving the anchor keeps it exact
    nb = neighbours(space, h)[-1][2]
    fast.set_anchor(nb)
    for _, _, c in neighbours(space, nb):
        assert fast(c) == pytest.approx(naive(c), rel=1e-6, abs=1e-6)


def test_first_order_estimates_track_exact_losses():
    model, layers, space = tiny_super_adapter("llama", widths=(8, 6, 4, 2))
    obj = AnswerLossObjective(model, layers, space, random_batches())
    h = space.heuristic()
    cands = [c for _, _, c in neighbours(space, h)]
    est = obj.estimate(h, cands)
    base = obj(h)
    exact = [obj(c) for c in cands]
    d_est, d_exact = np.array(est) - base, np.array(exact) - base
    assert np.corrcoef(d_est, d_exact)[0, 1] > 0.8
    assert np.mean(np.sign(d_est) == np.sign(d_exact)) >= 0.75


def test_sparse_adapter_estimate_matches_dense_formula():
    # with a dense base the non-zero mask is all ones: the masked formula must agree
    m1, l1, s1 = tiny_super_adapter("llama", sparse=False)
    m2, l2, s2 = tiny_super_adapter("llama", sparse=True)
    batches = random_batches()
    h = s1.heuristic()
    cands = [c for _, _, c in neighbours(s1, h)]
    e1 = AnswerLossObjective(m1, l1, s1, batches).estimate(h, cands)
    e2 = AnswerLossObjective(m2, l2, s2, batches).estimate(h, cands)
    assert np.allclose(e1, e2, rtol=1e-5, atol=1e-6)


def test_exhaustive_hill_climb_same_path_naive_and_accelerated():
    model, layers, space = tiny_super_adapter("llama")
    batches = random_batches()
    paths = []
    for fast in (False, True):
        obj = AnswerLossObjective(model, layers, space, batches, fast, fast)
        ev = CachedEvaluator(space, obj, budget=60)
        out = hill_climb(space, ev, max_turns=4, patience=0)
        paths.append(([t["config_key"] for t in out.trajectory], out.best.config))
    assert paths[0] == paths[1]


# ---------------------------------------------------------------------------- answer tokens only
# (from tests/evaluate/test_eval_loss.py: evaluate.loss.answer_loss was a copy of this objective)

EXAMPLES = [
    {"instruction": "What is 2 plus 3?", "output": "The answer is 5."},
    {"instruction": "Below is a task", "input": "with input", "output": "42"},
    {"instruction": "Long " * 20, "output": "an answer"},
]


def _manual(model, tok, examples, cutoff):
    total, count = 0.0, 0
    for e in examples:
        f = encode_example(tok, e, "alpaca", cutoff, train_on_inputs=False)
        ids = torch.tensor([f["input_ids"]])
        labels = torch.tensor(f["labels"])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        keep = labels[1:] != -100
        if keep.any():
            total += F.cross_entropy(logits[:-1][keep], labels[1:][keep], reduction="sum").item()
            count += int(keep.sum())
    return total / count


def _loss(model, layers, space, tok, examples, batch_size):
    batches = encode_validation(tok, examples, "alpaca", 256, batch_size)
    return AnswerLossObjective(model, layers, space, batches)(space.maximal())


def test_loss_scores_only_answer_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    model, layers, space = tiny_super_adapter(tokenizer=tok, max_positions=1024)
    got = _loss(model, layers, space, tok, EXAMPLES, batch_size=2)
    assert got == pytest.approx(_manual(model, tok, EXAMPLES, 256), rel=1e-5)
    # batch size does not matter
    assert _loss(model, layers, space, tok, EXAMPLES, 1) == pytest.approx(got, rel=1e-5)
    # the prompt is context only: a different output changes the loss, and the loss is an
    # average over answer tokens, not over prompt tokens
    other = [dict(e, output="zzzz zzzz") for e in EXAMPLES]
    assert _loss(model, layers, space, tok, other, 2) != pytest.approx(got)


def test_no_answer_tokens_raises(tiny_tokenizer):
    with pytest.raises(ShearsError, match="no validation example has answer tokens"):
        encode_validation(tiny_tokenizer, [{"instruction": "x " * 50, "output": "y"}], cutoff_len=8)
