"""Elastic-rank LoRA: one super-adapter (rank ``r_max``) whose nested prefixes are sub-adapters.

``y = W x + (alpha / r_max) * B[:, :r] @ A[:r] @ dropout(x)``; the scaling is ``alpha / r_max``
for every active rank ``r`` (as the Shears reference). With ``sparse_adapter=True`` (SQFT's
SparsePEFT) the delta is multiplied by the base weight's non-zero mask, so a merge keeps the exact
sparsity of the base.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shears.models import LINEAR_TYPES, get_submodule_parent, in_out_features


def lora_delta(
    a: torch.Tensor, b: torch.Tensor, rank: int, scaling: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Delta weight ``scaling * B[:, :rank] @ A[:rank]`` (out, in), masked by ``mask`` if given.

    a: (r_max, in); b: (out, r_max); mask: (out, in) bool or None.
    """
    delta = (b[:, :rank] @ a[:rank]) * scaling  # (out, in)
    if mask is not None:
        delta = delta * mask.to(delta.dtype)
    return delta


class ElasticLoRALinear(nn.Module):
    """Wraps a frozen ``nn.Linear`` or GPT-2 ``Conv1D`` (kept as ``base_layer``) with an elastic LoRA.

    Parameters ``lora_A`` (r_max, in) Kaiming-uniform and ``lora_B`` (out, r_max) zero, as LoRA.
    ``active_rank`` selects the sub-adapter: a slice, no masking matmuls over unused rank.
    ``dtype``: dtype of the adapter parameters (default: the base weight's; use float32 with a
    half-precision base for mixed-precision training).
    """

    def __init__(
        self,
        base_layer: nn.Module,
        r_max: int,
        alpha: float,
        dropout: float = 0.0,
        sparse_adapter: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if r_max < 1:
            raise ValueError(f"r_max must be >= 1, got {r_max}")
        if not isinstance(base_layer, LINEAR_TYPES):
            raise TypeError(f"can only wrap nn.Linear or Conv1D, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        for p in base_layer.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = in_out_features(base_layer)
        self.alpha = float(alpha)
        self.scaling = self.alpha / r_max
        self.sparse_adapter = sparse_adapter
        self.transposed = not isinstance(base_layer, nn.Linear)  # Conv1D stores (in, out)
        w = base_layer.weight
        dt = dtype or w.dtype
        self.lora_A = nn.Parameter(torch.empty(r_max, self.in_features, dtype=dt, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r_max, dtype=dt, device=w.device))
        self.reset_lora_parameters()
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.active_rank = r_max
        self.merged = False
        # how the merged delta was built, to recompute it on unmerge (no (out, in) copy is kept):
        # masked or not, and the (few) base non-zeros that the merge turned into exact zeros
        self._merged_keep = False
        self._merged_zeroed: torch.Tensor | None = None  # (k, 2) indices into (out, in)

    @torch.no_grad()
    def reset_lora_parameters(self) -> None:
        """LoRA initialisation: A Kaiming-uniform (as ``nn.Linear``), B zero (delta starts at 0)."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    # ------------------------------------------------------------------ state
    @property
    def r_max(self) -> int:
        """The super-adapter's rank: the rows of ``lora_A``."""
        return self.lora_A.shape[0]

    @property
    def active_rank(self) -> int:
        return self._active_rank

    @active_rank.setter
    def active_rank(self, rank: int) -> None:
        if not 0 <= rank <= self.r_max:
            raise ValueError(f"active rank {rank} outside [0, {self.r_max}]")
        if getattr(self, "merged", False) and rank != self._active_rank:
            raise RuntimeError("unmerge() before changing the active rank of a merged layer")
        self._active_rank = int(rank)

    def weight_mask(self) -> torch.Tensor:
        """Non-zero mask of the base weight, (out, in) bool."""
        w = self.base_layer.weight
        return (w.t() if self.transposed else w) != 0

    def active_weights(self, rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``(A[:r], B[:, :r])`` of the sub-adapter at ``rank`` (default: active)."""
        r = self.active_rank if rank is None else rank
        if r == self.r_max:  # no slice: avoids a (cheap) slice-backward per step at full rank
            return self.lora_A, self.lora_B
        return self.lora_A[:r], self.lora_B[:, :r]

    def delta_weight(self, rank: int | None = None) -> torch.Tensor:
        """The adapter's weight delta at ``rank`` (default: active), (out, in) orientation."""
        rank = self.active_rank if rank is None else rank
        mask = self.weight_mask() if self.sparse_adapter else None
        return lora_delta(self.lora_A, self.lora_B, rank, self.scaling, mask)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) -> (..., out)."""
        y = self.base_layer(x)  # (..., out)
        r = self.active_rank
        if self.merged or r == 0:
            return y
        a, b = self.active_weights(r)  # (r, in), (out, r)
        xd = self.lora_dropout(x)
        if xd.dtype != a.dtype and not torch.is_autocast_enabled(xd.device.type):
            xd = xd.to(a.dtype)
        if self.sparse_adapter:
            delta = self.delta_weight(r)  # (out, in), masked
            return y + F.linear(xd, delta).to(y.dtype)
        h = F.linear(xd, a)  # (..., r)
        return y + (F.linear(h, b) * self.scaling).to(y.dtype)  # (..., out)

    # ------------------------------------------------------------------ merge
    def _merge_delta(self, mask: torch.Tensor | None) -> torch.Tensor:
        """The active delta in the base weight's orientation and dtype (a temporary)."""
        delta = lora_delta(self.lora_A, self.lora_B, self.active_rank, self.scaling, mask)
        w = self.base_layer.weight
        return (delta.t() if self.transposed else delta).to(w.dtype)

    @torch.no_grad()
    def merge(self, keep_sparsity: bool | None = None) -> None:
        """Add the active delta into the base weight. ``keep_sparsity`` (default: the layer's
        ``sparse_adapter``) masks the delta with the base's non-zero mask first.

        No copy of the delta is kept (it would double the memory of the target weights):
        :meth:`unmerge` recomputes it from A, B and the same mask, so the adapter weights and the
        active rank must not change while merged.
        """
        if self.merged:
            return
        keep = self.sparse_adapter if keep_sparsity is None else keep_sparsity
        mask = self.weight_mask() if keep else None
        self.base_layer.weight.add_(self._merge_delta(mask))
        self._merged_zeroed = None
        if mask is not None:  # base non-zeros that became exactly 0 leave the recomputed mask
            zeroed = (mask & ~self.weight_mask()).nonzero()  # (k, 2) in (out, in)
            self._merged_zeroed = zeroed if len(zeroed) else None
        self._merged_keep = keep
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge` by subtracting the recomputed delta (same rank, same mask)."""
        if not self.merged:
            return
        mask = None
        if self._merged_keep:
            mask = self.weight_mask()
            if self._merged_zeroed is not None:
                mask[self._merged_zeroed[:, 0], self._merged_zeroed[:, 1]] = True
        self.base_layer.weight.sub_(self._merge_delta(mask))
        self._merged_zeroed = None
        self._merged_keep = False
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, r_max={self.r_max}, "
            f"active_rank={self.active_rank}, scaling={self.scaling:g}, sparse_adapter={self.sparse_adapter}"
        )


def inject_elastic_lora(
    model: nn.Module,
    module_names: list[str],
    r_max: int,
    alpha: float,
    dropout: float = 0.0,
    sparse_adapter: bool = False,
    dtype: torch.dtype | None = None,
) -> dict[str, ElasticLoRALinear]:
    """Replace each named linear with an :class:`ElasticLoRALinear` wrapping it; freeze everything
    else. Returns ``{module_name: layer}`` in the given order."""
    for p in model.parameters():
        p.requires_grad_(False)
    layers: dict[str, ElasticLoRALinear] = {}
    for name in module_names:
        parent, attr = get_submodule_parent(model, name)
        base = getattr(parent, attr)
        if isinstance(base, ElasticLoRALinear):
            raise ValueError(f"{name} already has an elastic LoRA adapter")
        layer = ElasticLoRALinear(base, r_max, alpha, dropout, sparse_adapter, dtype)
        setattr(parent, attr, layer)
        layers[name] = layer
    return layers


def elastic_layers(model: nn.Module) -> dict[str, ElasticLoRALinear]:
    """All elastic LoRA layers of ``model`` by module name (the name of the wrapped linear)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, ElasticLoRALinear)}


def remove_elastic_lora(
    model: nn.Module, merge: bool = False, keep_sparsity: bool | None = None
) -> nn.Module:
    """Put the base linears back (optionally merging the active sub-adapter first)."""
    for name, layer in elastic_layers(model).items():
        if merge:
            layer.merge(keep_sparsity)
        parent, attr = get_submodule_parent(model, name)
        setattr(parent, attr, layer.base_layer)
    return model
