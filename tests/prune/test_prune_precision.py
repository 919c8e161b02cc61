"""``--precision``: the calibration forward passes under bf16 autocast, everything else (weights,
statistics, masks, saved model, perplexity) in its own dtype; the added setting keeps digests."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from prune_helpers import TEXT
from safetensors import safe_open

from conftest import tiny_model
from input_helpers import one_error
from shears import precision as shears_precision
from shears.artifacts import PRUNE_REPORT
from shears.config import added_defaults, from_dict, original_names, to_dict
from shears.errors import ShearsError
from shears.models import find_targets, weight_out_in
from shears.pipeline.ledger import NEUTRAL_KEYS, stage_digest
from shears.prune import PruneConfig, run_prune
from shears.prune.calibrate import SequentialPruner


def _prune(model, ids, **settings):
    cfg = PruneConfig(sparsity=0.5, batch_size=4, **settings)
    targets = find_targets(model)
    pruner = SequentialPruner(model, targets, cfg, progress=False)
    pruner.run(ids)
    return pruner, targets


@pytest.mark.parametrize(("precision", "enabled"), [("bf16", True), ("fp32", False)])
def test_autocast_is_on_inside_calibration_forwards_only_with_bf16(precision, enabled):
    model = tiny_model("llama")
    seen: list[tuple[bool, torch.dtype]] = []
    spy = model.model.layers[1].mlp.down_proj
    handle = spy.register_forward_hook(
        lambda m, i, o: seen.append((torch.is_autocast_enabled("cpu"), o.dtype))
    )
    pruner, _ = _prune(model, torch.randint(0, 128, (4, 16)), precision=precision)
    handle.remove()
    assert seen and all(on is enabled for on, _ in seen)
    assert {dt for _, dt in seen} == {torch.bfloat16 if enabled else torch.float32}
    assert pruner.autocast == (torch.bfloat16 if enabled else None)
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the engine


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_statistics_accumulate_in_float32_outside_autocast(monkeypatch, method):
    from shears.prune.sparsegpt import HessianStats
    from shears.prune.wanda import ColumnNormStats

    cls = ColumnNormStats if method == "wanda" else HessianStats
    original, seen = cls.update, []

    def spy(self, x):
        seen.append(torch.is_autocast_enabled("cpu"))
        original(self, x)
        for t in vars(self).values():
            if isinstance(t, torch.Tensor):
                assert t.dtype == torch.float32

    monkeypatch.setattr(cls, "update", spy)
    _prune(tiny_model("llama"), torch.randint(0, 128, (4, 16)), precision="bf16", method=method)
    assert seen and not any(seen)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_is_bf16_autocast_only_on_a_cpu_with_bf16(monkeypatch, has_bf16):
    monkeypatch.setattr(shears_precision, "cpu_bf16", lambda: has_bf16)
    model = tiny_model("llama")
    pruner = SequentialPruner(model, find_targets(model), PruneConfig(), progress=False)
    assert pruner.autocast == (torch.bfloat16 if has_bf16 else None)
    bf16_model = tiny_model("llama").to(torch.bfloat16)  # bf16 weights compute in bf16 anyway
    assert SequentialPruner(bf16_model, find_targets(bf16_model), PruneConfig()).autocast is None


def test_bf16_masks_agree_with_fp32_and_rows_stay_exact():
    ids = torch.randint(0, 128, (8, 32))
    masks = {}
    for precision in ("fp32", "bf16"):
        _, targets = _prune(tiny_model("llama"), ids, precision=precision)
        masks[precision] = {n: weight_out_in(m) == 0 for n, m in targets.items()}
        for name, mod in targets.items():
            w = weight_out_in(mod)
            assert w.dtype == torch.float32, name  # fp32 master weights
            assert ((w == 0).sum(1) == w.shape[1] // 2).all(), name  # exact per row
    same = sum(int((masks["fp32"][n] == masks["bf16"][n]).sum()) for n in masks["fp32"])
    total = sum(m.numel() for m in masks["fp32"].values())
    assert same / total >= 0.98, same / total


def test_bf16_run_saves_float32_and_records_precision(tmp_path, tiny_folder):
    calib = tmp_path / "calib.txt"
    calib.write_text(TEXT)
    out = tmp_path / "out"
    cfg = PruneConfig(
        model=tiny_folder,
        output_dir=str(out),
        calibration=str(calib),
        nsamples=4,
        seqlen=32,
        batch_size=2,
        device="cpu",
        precision="bf16",
        plot=False,
    )
    result = run_prune(cfg, progress=False)
    assert (result.precision, result.autocast) == ("bf16", "bf16-autocast")
    report = json.loads((out / PRUNE_REPORT).read_text())
    assert (report["precision"], report["autocast"]) == ("bf16", "bf16-autocast")
    with safe_open(str(out / "model.safetensors"), framework="pt") as fh:
        dtypes = {fh.get_slice(k).get_dtype() for k in fh.keys()}  # noqa: SIM118
    assert dtypes == {"F32"}


def test_magnitude_records_no_autocast():
    cfg = PruneConfig(method="magnitude", precision="bf16")
    model = tiny_model("llama")
    from shears.prune import prune_model

    assert prune_model(model, None, cfg, progress=False).autocast == "off"


def test_bad_precision_is_one_line_naming_value_and_allowed():
    with pytest.raises(ShearsError) as err:
        from_dict(PruneConfig, {"precision": "fp16"})
    msg = str(err.value)
    assert "\n" not in msg
    assert "--precision 'fp16'" in msg and "auto, fp32, bf16" in msg


def test_bad_precision_on_the_command_line(capsys, tmp_path, tiny_folder):
    one_error(
        capsys,
        "prune",
        "--model",
        tiny_folder,
        "--precision",
        "half",
        "--output-dir",
        tmp_path / "out",
        match="--precision 'half' is not known; allowed: auto, fp32, bf16",
    )


def test_added_settings_at_default_keep_the_stage_digest():
    added = added_defaults(PruneConfig)
    assert {"precision": "auto", "offload": "none", "offload_dir": None}.items() <= added.items()
    cfg = PruneConfig()
    names = original_names(PruneConfig)
    old = {  # what the digest hashed before the settings existed
        names.get(k, k): v
        for k, v in to_dict(cfg).items()
        if k not in NEUTRAL_KEYS
        and k not in ("precision", "offload", "offload_dir")
        and not (k in added and v == added[k])
    }
    text = json.dumps({"settings": old, "upstream": []}, sort_keys=True, default=str)
    assert stage_digest(cfg, []) == hashlib.sha1(text.encode()).hexdigest()[:16]
    assert stage_digest(PruneConfig(precision="bf16"), []) != stage_digest(cfg, [])
