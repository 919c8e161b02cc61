"""OWL layer-wise sparsity (``--sparsity-profile owl``): the profile maths (``shears.prune.owl``),
the dense first pass, exact per-row counts per block, the report and plot, and the errors."""

import json

import pytest
import torch
from prune_helpers import TEXT, tiny_model_for

from input_helpers import one_error
from shears.artifacts import PRUNE_PLOT, PRUNE_REPORT
from shears.errors import ShearsError
from shears.models import find_decoder_blocks, find_targets, in_out_features, weight_out_in
from shears.prune import PruneConfig, prune_model
from shears.prune.calibrate import InputStatsHooks, make_stats
from shears.prune.owl import MAX_SPARSITY, outlier_ratio, owl_profile
from shears.prune.run import build_calibration, save_pruned
from shears.prune.wanda import wanda_scores


def _weighted_mean(rates, params):
    return sum(r * p for r, p in zip(rates, params, strict=True)) / sum(params)


# ---------------------------------------------------------------------------- pure maths


def test_outlier_ratio_counts_scores_above_m_times_the_mean_over_all_modules():
    a = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 31.0]])  # all 10 scores: mean 4, 31 > 5 * 4
    assert outlier_ratio([a, b], 5.0) == pytest.approx(0.1)
    assert outlier_ratio([a, b], 8.0) == 0.0  # 31 < 8 * 4
    assert outlier_ratio([a], 0.5) == 1.0


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.6, 0.7])
@pytest.mark.parametrize("lam", [0.0, 0.08, 0.2])
def test_profile_weighted_mean_equals_target(sparsity, lam):
    g = torch.Generator().manual_seed(int(sparsity * 100 + lam * 1000))
    ratios = (torch.rand(12, generator=g) * 0.05).tolist()
    params = torch.randint(1000, 5000, (12,), generator=g).tolist()
    rates = owl_profile(ratios, params, sparsity, lam)
    assert abs(_weighted_mean(rates, params) - sparsity) <= 1e-3 * sparsity
    assert all(0.0 <= r < 1.0 for r in rates)


def test_more_outliers_get_lower_sparsity_over_the_lambda_span():
    ratios = [0.01, 0.03, 0.02, 0.05]
    rates = owl_profile(ratios, [10] * 4, 0.5, 0.08)
    order_by_ratio = sorted(range(4), key=lambda i: ratios[i])
    assert [rates[i] for i in order_by_ratio] == sorted(rates, reverse=True)
    assert max(rates) - min(rates) == pytest.approx(0.16)
    assert _weighted_mean(rates, [10] * 4) == pytest.approx(0.5, abs=1e-12)


def test_equal_ratios_or_zero_lambda_give_the_uniform_profile():
    assert owl_profile([0.02] * 3, [5, 6, 7], 0.6, 0.08) == pytest.approx([0.6] * 3)
    assert owl_profile([0.0, 0.1, 0.2], [5, 6, 7], 0.6, 0.0) == pytest.approx([0.6] * 3)
    assert owl_profile([], [], 0.5, 0.08) == []


def test_profile_clips_to_zero_one_and_rebalances():
    ratios, params = [0.0, 0.5, 1.0], [1, 1, 8]
    low = owl_profile(ratios, params, 0.05, 0.5)
    assert min(low) == 0.0 and _weighted_mean(low, params) == pytest.approx(0.05, abs=1e-9)
    high = owl_profile(ratios, params, 0.97, 0.5)
    assert max(high) == MAX_SPARSITY and max(high) < 1.0
    assert _weighted_mean(high, params) == pytest.approx(0.97, abs=1e-9)


# ---------------------------------------------------------------------------- on a model


def _model_with_outliers(tokenizer, block=0, seed=0):
    """A 4-block tiny LLaMA whose ``block`` has 5 % of its weights scaled 50x (its scores differ)."""
    model = tiny_model_for(tokenizer, "llama", seed=seed, layers=4)
    prefix, _ = find_decoder_blocks(model)
    with torch.no_grad():
        for name, mod in find_targets(model).items():
            if name.startswith(f"{prefix}.{block}."):
                w = weight_out_in(mod).view(-1)
                w[::20] *= 50.0  # 5 % of the weights
    return model


def _owl_cfg(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        nsamples=4,
        seqlen=32,
        batch_size=2,
        sparsity_profile="owl",
        owl_lambda=0.1,
    )
    return PruneConfig(**{**base, **kw})


@pytest.mark.parametrize("method", ["wanda", "magnitude", "sparsegpt"])
def test_owl_rows_exact_per_block_and_mean_equals_target(method, tmp_path, tiny_tokenizer):
    model = _model_with_outliers(tiny_tokenizer, block=1)
    cfg = _owl_cfg(tmp_path, method=method, sparsity=0.6)
    report = prune_model(model, tiny_tokenizer, cfg, calibration=[TEXT], progress=False)
    profile = report.profile
    assert [p["block"] for p in profile] == [0, 1, 2, 3]
    rates = {p["block"]: p["sparsity"] for p in profile}
    params = [p["parameters"] for p in profile]
    assert abs(_weighted_mean(list(rates.values()), params) - 0.6) <= 1e-3 * 0.6
    by_ratio = sorted(profile, key=lambda p: p["outlier_ratio"])  # more outliers: fewer zeros
    assert [p["sparsity"] for p in by_ratio] == sorted(rates.values(), reverse=True)
    assert max(rates.values()) - min(rates.values()) == pytest.approx(0.2)  # 2 * lambda
    for name, info in report.layers.items():
        w = weight_out_in(model.get_submodule(name))
        in_f, _ = in_out_features(model.get_submodule(name))
        zeros = (w == 0).sum(dim=1)
        assert torch.all(zeros == int(in_f * rates[info["block"]])), name
    total = sum(p["parameters"] for p in profile)
    assert total == report.targets["numel"]


def test_owl_ratios_come_from_the_dense_model(tmp_path, tiny_tokenizer):
    """The first pass prunes nothing: its ratios equal those of one ordinary dense forward (in
    full precision, as that forward)."""
    model = _model_with_outliers(tiny_tokenizer, block=2)
    cfg = _owl_cfg(tmp_path, owl_m=3.0, precision="fp32")
    ids = build_calibration(tiny_tokenizer, cfg, [TEXT])
    targets = find_targets(model)
    hooks = InputStatsHooks(targets, lambda m: make_stats("wanda", m))
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    hooks.remove()
    prefix, blocks = find_decoder_blocks(model)
    expected = []
    for i in range(len(blocks)):
        scores = [
            wanda_scores(weight_out_in(m), hooks.stats[n].norms())
            for n, m in targets.items()
            if n.startswith(f"{prefix}.{i}.")
        ]
        expected.append(outlier_ratio(scores, 3.0))
    report = prune_model(model, tiny_tokenizer, cfg, calibration=ids, progress=False)
    got = [p["outlier_ratio"] for p in report.profile]
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert min(got) > 0 and len(set(got)) == 4


def test_uniform_is_unchanged_and_equals_owl_with_zero_lambda(tmp_path, tiny_tokenizer):
    masks = {}
    for key, kw in {"uniform": {}, "owl0": dict(sparsity_profile="owl", owl_lambda=0.0)}.items():
        model = _model_with_outliers(tiny_tokenizer, block=0)
        cfg = PruneConfig(output_dir=str(tmp_path / key), nsamples=4, seqlen=32, batch_size=2, **kw)
        report = prune_model(model, tiny_tokenizer, cfg, calibration=[TEXT], progress=False)
        masks[key] = {n: weight_out_in(model.get_submodule(n)) == 0 for n in report.layers}
        if key == "uniform":
            assert report.profile is None and report.sparsity_profile == "uniform"
            for n, m in masks[key].items():
                assert torch.all(m.sum(dim=1) == m.shape[1] // 2), n
    assert all(torch.equal(masks["uniform"][n], masks["owl0"][n]) for n in masks["uniform"])


def test_owl_report_and_plot_are_saved(tmp_path, tiny_tokenizer):
    model = _model_with_outliers(tiny_tokenizer)
    cfg = _owl_cfg(tmp_path)
    report = prune_model(model, tiny_tokenizer, cfg, calibration=[TEXT], progress=False)
    save_pruned(model, tiny_tokenizer, report, cfg)
    saved = json.loads((tmp_path / "out" / PRUNE_REPORT).read_text())
    assert saved["sparsity_profile"] == "owl"
    assert saved["profile"] == report.profile and len(saved["profile"]) == 4
    assert set(saved["profile"][0]) == {"block", "outlier_ratio", "sparsity", "parameters"}
    assert (tmp_path / "out" / PRUNE_PLOT).stat().st_size > 1000


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(pattern="2:4"), "--sparsity-profile owl needs --pattern unstructured"),
        (dict(owl_m=0.0), "--owl-m 0.0 must be > 0"),
        (dict(owl_m=-1.0), "--owl-m -1.0 must be > 0"),
        (dict(owl_lambda=-0.1), r"--owl-lambda -0.1 must be in \[0, 0.5\]"),
        (dict(owl_lambda=0.6), r"--owl-lambda 0.6 must be in \[0, 0.5\]"),
    ],
)
def test_bad_owl_settings_are_one_line_errors(kw, message):
    with pytest.raises(ShearsError, match=message):
        PruneConfig(sparsity_profile="owl", **kw)


def test_unknown_profile_and_cli_flags(capsys, tmp_path, tiny_folder):
    with pytest.raises(ShearsError, match="--sparsity-profile 'flat' is not known"):
        PruneConfig(sparsity_profile="flat")
    assert PruneConfig().sparsity_profile == "uniform"
    assert (PruneConfig().owl_m, PruneConfig().owl_lambda) == (5.0, 0.08)
    one_error(
        capsys,
        "prune",
        "--model",
        tiny_folder,
        "--sparsity-profile",
        "owl",
        "--pattern",
        "2:4",
        "--output-dir",
        tmp_path / "out",
        match="--sparsity-profile owl needs --pattern unstructured",
    )
