"""Small shared helpers: logging, seeds, devices and dtypes, atomic file writes, memory.

Output folders (atomic replacement, --overwrite rules, cleanup) live in :mod:`shears.outputs`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shears.errors import ShearsError

logger = logging.getLogger("shears")

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to the *current* ``sys.stderr`` (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def setup_logging(level: str = "INFO") -> None:
    """Configure the ``shears`` logger once (idempotent); messages go to stderr."""
    root = logging.getLogger("shears")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU. Anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ShearsError(
            f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ShearsError(
            f"--device {device!r} asked for CUDA but no GPU is visible; use auto or cpu"
        )
    return dev


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """``auto`` -> bfloat16 on a GPU that supports it (else float16), float32 on CPU."""
    if dtype == "auto":
        if device is not None and device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if dtype not in DTYPES:
        raise ShearsError(f"--dtype {dtype!r} is not known; allowed: auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype):
        return str(obj).replace("torch.", "")
    if isinstance(obj, torch.device):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _vm_hwm_kib() -> int | None:
    """``VmHWM`` of ``/proc/self/status`` (Linux): the peak RSS of this process image alone."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (MiB) and, on CUDA, peak allocated GPU memory (MiB).

    On Linux this is ``VmHWM``: ``ru_maxrss`` would carry over the parent's peak into a process
    it started (a benchmark's child would report its launcher's memory)."""
    rss_kib = _vm_hwm_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mib": round(rss_kib / 1024, 1)}
    if torch.cuda.is_available():
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def package_versions(*packages: str, python: bool = False) -> dict[str, str]:
    """``{package: __version__}`` of the imported ``packages`` (and ``python`` when asked), for the
    results JSON of a stage."""
    import importlib
    import platform

    out = {name: importlib.import_module(name).__version__ for name in packages}
    if python:
        out["python"] = platform.python_version()
    return out
