"""shears.precision: the one owner of compute precision (bf16 autocast) for every stage."""

import pytest
import torch

from shears import precision
from shears.errors import ShearsError

CPU = torch.device("cpu")


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n\n")
    precision.cpu_bf16.cache_clear()
    return str(path)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True), ("avx512f avx2", False)],
)
def test_cpu_bf16_reads_the_flags(tmp_path, flags, expected):
    assert precision.cpu_bf16(_cpuinfo(tmp_path, flags)) is expected
    precision.cpu_bf16.cache_clear()


def test_cpu_bf16_without_cpuinfo_is_false(tmp_path):
    assert precision.cpu_bf16(str(tmp_path / "missing")) is False
    precision.cpu_bf16.cache_clear()


def test_fp32_never_autocasts(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: True)
    for stage in ("prune", "train", "eval"):
        assert precision.autocast_dtype("fp32", CPU, stage) is None


def test_bf16_always_autocasts_fp32_weights(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: False)
    assert precision.autocast_dtype("bf16", CPU, "eval") is torch.bfloat16


def test_low_precision_weights_are_not_autocast():
    for dt in (torch.bfloat16, torch.float16):
        assert precision.autocast_dtype("bf16", CPU, "prune", weights=dt) is None


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_follows_the_stage_policy_and_the_cpu(monkeypatch, has_bf16):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: has_bf16)
    monkeypatch.setattr(precision, "AUTO_BF16_CPU", {"prune": True, "eval": False})
    assert precision.autocast_dtype("auto", CPU, "prune") == (torch.bfloat16 if has_bf16 else None)
    assert precision.autocast_dtype("auto", CPU, "eval") is None
    assert precision.autocast_dtype("auto", CPU, "unknown-stage") is None


def test_auto_on_gpu_adds_nothing(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16", lambda: True)
    assert precision.autocast_dtype("auto", torch.device("cuda"), "prune") is None


def test_bad_precision_is_one_line():
    with pytest.raises(ShearsError) as err:
        precision.autocast_dtype("fp8", CPU, "prune")
    msg = str(err.value)
    assert "'fp8'" in msg and "auto, fp32, bf16" in msg and "\n" not in msg


def test_autocast_context_turns_autocast_on_and_off():
    with precision.autocast(torch.bfloat16, CPU):
        assert torch.is_autocast_enabled("cpu")
        out = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
        assert out.dtype == torch.bfloat16
    with precision.autocast(None, CPU):
        assert not torch.is_autocast_enabled("cpu")
    assert precision.describe(torch.bfloat16) == "bf16-autocast"
    assert precision.describe(None) == "off"
