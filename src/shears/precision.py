"""Compute precision, one owner for every stage: whether the forward passes of a stage run under
bf16 autocast. Separate from the storage dtype (``--dtype``): under autocast the weights stay in
their own dtype (fp32 master weights when training), statistics accumulate in fp32, and what a
stage saves keeps the model's dtype.

``auto`` picks bf16 autocast on a CPU that reports bf16 instructions (``avx512_bf16`` or
``amx_bf16``) for the stages where it was measured to keep quality (:data:`AUTO_BF16_CPU`, figures
in ``bench/results/precision_*.json``); on a GPU the stages already load bf16/fp16 weights
(``--dtype auto``) or use the Trainer's mixed precision, so ``auto`` adds nothing there.
``fp32`` forces full precision everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import torch

from shears.errors import ShearsError

PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

# Stages whose ``auto`` is bf16 autocast on a CPU with bf16 instructions. A stage is listed True
# only once bench/precision.py showed its quality holds (bench/results/precision_cpu.json, on
# SmolLM2-135M: pruned perplexity 45.47 vs 45.53 in fp32; NLS test accuracy 53.5 vs 52.5 %;
# evaluation accuracy 52.5 vs 52.5 %, 186 of 200 answers identical). Search scores candidates
# with the "eval" policy.
AUTO_BF16_CPU: dict[str, bool] = {"prune": True, "train": True, "eval": True}


def check_precision(value: str, flag: str = "--precision") -> str:
    """``value`` if it is one of :data:`PRECISIONS`, else one clear error line."""
    if value not in PRECISIONS:
        raise ShearsError(
            f"{flag} {value!r} is not known; allowed: {', '.join(PRECISIONS)} (auto: bf16 "
            "autocast where the hardware has it and quality holds, fp32: full precision)"
        )
    return value


@lru_cache(maxsize=1)
def cpu_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU reports native bf16 instructions (AVX512-BF16 or AMX-BF16)."""
    from shears.deploy.cpu import cpu_info  # the one reader of the CPU's flags (pure, no OpenVINO)

    return any(f in cpu_info(cpuinfo)["flags"] for f in CPU_BF16_FLAGS)


def autocast_dtype(
    precision: str, device: torch.device, stage: str, weights: torch.dtype = torch.float32
) -> torch.dtype | None:
    """The autocast dtype of ``stage`` on ``device`` (None: no autocast, the weights' dtype).

    Autocast only applies to fp32 weights: a model loaded in bf16/fp16 already computes in it.
    ``bf16`` is honoured on any device (a CPU without bf16 instructions emulates it, slowly)."""
    check_precision(precision)
    if precision == "fp32" or weights != torch.float32:
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cpu" and AUTO_BF16_CPU.get(stage, False) and cpu_bf16():
        return torch.bfloat16
    return None


def describe(dtype: torch.dtype | None) -> str:
    """``"bf16-autocast"`` or ``"off"``: the label results JSON record."""
    return "bf16-autocast" if dtype == torch.bfloat16 else "off"


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """``torch.autocast`` on ``device`` in ``dtype``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
