"""What the CPU offers the sparse kernel (AMX), and the kernel's rate: pure functions."""

from __future__ import annotations

import math
import platform
from pathlib import Path

from shears.errors import ShearsError

AMX_FLAGS = ("amx_tile", "amx_int8")
REPORTED_FLAGS = ("amx_tile", "amx_int8", "amx_bf16", "avx512f", "avx512_vnni", "avx512_bf16")


def parse_cpuinfo(text: str) -> dict[str, object]:
    """``{"model": name, "flags": [...]}`` from the text of ``/proc/cpuinfo`` (first CPU)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "flags": sorted(flags)}


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, object]:
    """The CPU's model name, the flags that matter here and whether AMX is present
    (``None``: unknown, e.g. not Linux)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return {"model": platform.processor(), "flags": [], "amx": None}
    info = parse_cpuinfo(path.read_text(errors="replace"))
    flags = set(info["flags"])  # type: ignore[arg-type]
    return {
        "model": info["model"],
        "flags": [f for f in REPORTED_FLAGS if f in flags],
        "amx": all(f in flags for f in AMX_FLAGS),
    }


def check_rate(rate: float) -> float:
    """``rate`` as the kernel takes it: a zero fraction in (0, 1] (1.0 turns the kernel off)."""
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0.0 < rate <= 1.0):
        raise ShearsError(
            f"--sparse-rate {rate!r} is out of range: a zero fraction in (0, 1] (layers at least "
            "that sparse run the sparse kernel; 1.0 turns it off)"
        )
    return float(rate)


def rate_from_sparsity(min_sparsity: float | None, margin: float = 0.01) -> float:
    """The kernel rate for a model whose least sparse pruned matmul has ``min_sparsity`` zeros:
    just below it (``margin``), so every pruned layer qualifies and unpruned ones do not."""
    if min_sparsity is None or min_sparsity - margin <= 0.0:
        raise ShearsError(
            "the model has no pruned matmul layers (no zeros measured in its weights): "
            "w8a8-sparse needs a pruned model; use --precision int8-weights or w8a8"
        )
    return round(min(min_sparsity - margin, 1.0), 4)
