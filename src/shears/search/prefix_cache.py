"""Reuse the activations of the decoder blocks below a changed group.

The hidden states leaving block ``j`` depend only on the adapter ranks of blocks ``0..j``. For one
*anchor* config we remember what every block returned (per validation batch); a config that first
differs from the anchor in block ``k`` then runs only blocks ``k..L-1`` (plus the cheap embedding and
head): the forward of each block ``j < k`` is temporarily replaced by a lookup of its remembered
output. Generic: blocks are found with :func:`shears.models.find_decoder_blocks` and whatever a
block returns (tensor or tuple) is replayed as is, so the model's own loop, masks and position
embeddings run unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

from shears.models import find_decoder_blocks


class BlockOutputCache:
    """Outputs of every decoder block for one anchor config, per batch index."""

    def __init__(self, model: nn.Module) -> None:
        self.prefix, self.blocks = find_decoder_blocks(model)
        self.outputs: dict[int, list[Any]] = {}  # batch index -> output of each block

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def has(self, batch_idx: int, upto: int) -> bool:
        """True if the outputs of blocks ``0..upto-1`` are remembered for ``batch_idx``."""
        outs = self.outputs.get(batch_idx)
        return upto == 0 or (outs is not None and all(o is not None for o in outs[:upto]))

    @contextlib.contextmanager
    def capture(self, batch_idx: int, start: int = 0) -> Iterator[None]:
        """Remember the outputs of blocks ``start..L-1`` of the forward passes run inside."""
        outs = self.outputs.setdefault(batch_idx, [None] * self.n_blocks)
        handles = []
        for j in range(start, self.n_blocks):

            def hook(_mod, _args, output, j=j):
                outs[j] = _detach(output)

            handles.append(self.blocks[j].register_forward_hook(hook))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    @contextlib.contextmanager
    def reuse(self, batch_idx: int, upto: int) -> Iterator[None]:
        """Inside, blocks ``0..upto-1`` return their remembered outputs without computing."""
        if upto == 0:
            yield
            return
        if not self.has(batch_idx, upto):
            raise RuntimeError(f"no remembered outputs of blocks < {upto} for batch {batch_idx}")
        outs = self.outputs[batch_idx]
        patched = []
        try:
            for j in range(upto):

                def replay(*_args, _out=outs[j], **_kwargs):
                    return _out

                # an instance attribute shadows the class's forward; nn.Module.__call__ uses it
                self.blocks[j].forward = replay
                patched.append(self.blocks[j])
            yield
        finally:
            for block in patched:
                del block.forward

    def clear(self) -> None:
        self.outputs.clear()


def _detach(output: Any) -> Any:
    if hasattr(output, "detach"):
        return output.detach()
    if isinstance(output, tuple):
        return tuple(_detach(o) for o in output)
    if isinstance(output, list):
        return [_detach(o) for o in output]
    return output
