"""Streamed pruning (``--offload cpu|disk``): the decoder blocks live off the compute device and
come to it one at a time, as llm-compressor's sequential pipeline does, so a model larger than
the device prunes with about one block's weights plus the calibration activations on it.

A stream owns where the weights are; :class:`~shears.prune.calibrate.SequentialPruner` asks it
for ``capturing()`` (block 0 and the modules outside the blocks, e.g. the embeddings, on the
device for the capture pass) and then for one ``block(idx)`` at a time. The maths and the float
ops are those of the in-memory path, so on the same device the masks and the saved weights are
bit for bit the same.

- :class:`BlockStream` (``none``): every weight stays where the model was loaded.
- :class:`CpuStream` (``cpu``): the model is loaded in CPU memory; a block is moved to the
  device for its calibration and pruning, then back.
- :class:`~shears.prune.disk.DiskStream` (``disk``): the blocks' weights stay in the folder's
  ``.safetensors`` until their block is at work; pruned blocks go to shards in an offload folder
  that saving moves into the output.

Each stream tracks the bytes of weights (parameters and buffers) it holds on the compute device
at once: ``device_memory["peak_resident_weight_bytes"]`` in ``prune_report.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shears.errors import ShearsError
from shears.models import find_decoder_blocks
from shears.prune.config import PruneConfig
from shears.sparsity import count_parameters
from shears.utils import resolve_device, resolve_dtype


def tensors_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of ``tensors``, each counted once (tied weights)."""
    seen: dict[int, int] = {id(t): t.numel() * t.element_size() for t in tensors}
    return sum(seen.values())


def module_tensors(module: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` (tied ones once)."""
    return list(module.parameters()) + list(module.buffers())


class BlockStream:
    """No streaming (``--offload none``): the whole model stays on its device; the tracked peak is
    the whole model's weights."""

    mode = "none"

    def __init__(self, model: nn.Module, device: torch.device | None = None) -> None:
        self.model = model
        self.prefix, self.blocks = find_decoder_blocks(model)
        self.device = device or next(model.parameters()).device
        self.block_bytes = [tensors_bytes(module_tensors(b)) for b in self.blocks]
        self.outside_bytes = tensors_bytes(module_tensors(model)) - sum(self.block_bytes)
        self.resident = self.peak = self.outside_bytes + sum(self.block_bytes)  # all, always

    def _place(self, nbytes: int) -> None:
        self.resident += nbytes
        self.peak = max(self.peak, self.resident)

    def _evict(self, nbytes: int) -> None:
        self.resident -= nbytes

    @contextmanager
    def capturing(self) -> Iterator[None]:
        """For the capture pass: block 0 and the modules outside the blocks on :attr:`device`."""
        yield

    @contextmanager
    def block(self, idx: int, write: bool = True) -> Iterator[nn.Module]:
        """Block ``idx`` on :attr:`device` for the ``with`` body. ``write``: the body may prune
        it (a disk stream writes it out after)."""
        yield self.blocks[idx]

    def finish(self) -> None:
        """Called once every target is pruned (a disk stream writes the blocks left)."""

    def count_parameters(self) -> dict[str, int]:
        """``{"parameters", "nonzero_parameters"}`` of the whole model."""
        return count_parameters(self.model)

    def save_model(self, folder: Path) -> None:
        """Write the model's weights and config into ``folder`` (safetensors)."""
        self.model.save_pretrained(folder, safe_serialization=True)

    def record(self) -> dict[str, Any]:
        """What ``prune_report.json`` says about device memory (``device_memory``)."""
        out: dict[str, Any] = {
            "offload": self.mode,
            "device": str(self.device),
            "peak_resident_weight_bytes": self.peak,
            "peak_resident_weight_mib": round(self.peak / 2**20, 3),
            "largest_block_bytes": max(self.block_bytes, default=0),
            "outside_blocks_bytes": self.outside_bytes,
            "note": "peak_resident_weight_*: weights (parameters and buffers) held on the compute "
            "device at once, as tracked by the pruning loop (activations excluded)",
        }
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
            out["peak_device_allocated_mib"] = round(peak / 2**20, 1)
        return out

    def close(self) -> None:
        """Free what the stream holds (a disk stream: its offload folder)."""


class CpuStream(BlockStream):
    """``--offload cpu``: the model lives in CPU memory; one block at a time (and, for the capture
    pass, the modules outside the blocks except an untied LM head) goes to :attr:`device`."""

    mode = "cpu"

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__(model, device)
        self.home = next(model.parameters()).device  # where the weights live between uses
        in_blocks = {id(m) for b in self.blocks for m in b.modules()}
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        # the modules run before the first block (embeddings, rotary tables...): own tensors only
        self._outside = [m for m in model.modules() if id(m) not in in_blocks and m is not head]
        moved = [t for m in self._outside for t in own_tensors(m)]
        self.outside_bytes = tensors_bytes(moved)
        self.resident = self.peak = 0  # nothing on the device until capturing or a block

    @contextmanager
    def capturing(self) -> Iterator[None]:
        for m in self._outside:
            _move_own(m, self.device)
        self._place(self.outside_bytes)
        try:
            with self.block(0, write=False):
                yield
        finally:
            for m in self._outside:
                _move_own(m, self.home)
            self._evict(self.outside_bytes)

    @contextmanager
    def block(self, idx: int, write: bool = True) -> Iterator[nn.Module]:
        blk = self.blocks[idx]
        blk.to(self.device)
        self._place(self.block_bytes[idx])
        try:
            yield blk
        finally:
            blk.to(self.home)
            self._evict(self.block_bytes[idx])


def own_tensors(module: nn.Module) -> list[torch.Tensor]:
    """``module``'s own parameters and buffers (not its children's)."""
    return [t for t in (*module._parameters.values(), *module._buffers.values()) if t is not None]


def _move_own(module: nn.Module, device: torch.device) -> None:
    """Move ``module``'s own parameters (in place: tied weights stay tied) and buffers."""
    for p in module._parameters.values():
        if p is not None:
            p.data = p.data.to(device)
    for name, b in module._buffers.items():
        if b is not None:
            module._buffers[name] = b.to(device)


# ---------------------------------------------------------------------------- open


def load_dtype_name(cfg: PruneConfig, device: torch.device) -> str:
    """``cfg.dtype`` resolved for the compute ``device`` (``auto``: bf16 on a GPU), as a name that
    :func:`shears.models.load_model` takes, for a model loaded on the CPU."""
    return str(resolve_dtype(cfg.dtype, device)).removeprefix("torch.")


def make_stream(model: nn.Module, cfg: PruneConfig) -> BlockStream:
    """The stream of a model already in memory (``prune_model``): none or cpu."""
    if cfg.offload == "none":
        return BlockStream(model)
    if cfg.offload == "cpu":
        return CpuStream(model, resolve_device(cfg.device))
    raise ShearsError(
        "--offload disk reads the model from its folder: run the stage (shears prune, "
        "shears.prune.run_prune), not prune_model on a model in memory"
    )
