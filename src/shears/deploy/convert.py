"""PyTorch causal LM -> OpenVINO ``ov.Model`` with an explicit KV cache (stateless).

optimum-intel 2.2 cannot be imported with transformers 5.24 (its visual-language module imports
names that transformers removed), so shears converts with ``openvino.convert_model`` itself.

The converted graph (batch 1)::

    inputs   input_ids (1, q) i64, position_ids (1, q) i64,
             attention_mask (1, 1, q, past + q) f32 (additive: 0 or a large negative),
             past.<i>.key / past.<i>.value (1, kv_heads, past, head_dim) f32 per layer
    outputs  logits (1, q, vocab) f32, present.<i>.key / present.<i>.value (past + q)

The model runs with eager attention and a 4-D additive mask, so the traced graph holds no
Python-time decision on the sequence lengths (prefill and decode share one graph).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shears.errors import ShearsError

INPUT_IDS, POSITION_IDS, ATTENTION_MASK, LOGITS = (
    "input_ids",
    "position_ids",
    "attention_mask",
    "logits",
)


@dataclass(frozen=True)
class KVLayout:
    """Shape of the KV cache of one decoder layer: (1, kv_heads, seq, head_dim)."""

    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: Any) -> KVLayout:
        cfg = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
        layers = getattr(cfg, "num_hidden_layers", None)
        heads = getattr(cfg, "num_attention_heads", None)
        if not layers or not heads:
            raise ShearsError(
                f"model type {getattr(cfg, 'model_type', '?')!r} has no num_hidden_layers / "
                "num_attention_heads: shears deploy supports decoder-only transformers "
                "(llama, qwen2, mistral, ...)"
            )
        kv = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        return cls(int(layers), int(kv), int(head_dim))

    def names(self, prefix: str) -> list[str]:
        """``prefix.<i>.key``, ``prefix.<i>.value`` for every layer, in graph order."""
        return [f"{prefix}.{i}.{kv}" for i in range(self.layers) for kv in ("key", "value")]

    def empty(self) -> list[np.ndarray]:
        """An empty cache (past length 0)."""
        shape = (1, self.kv_heads, 0, self.head_dim)
        return [np.zeros(shape, np.float32) for _ in range(2 * self.layers)]


def causal_mask(q: int, past: int) -> np.ndarray:
    """Additive mask (1, 1, q, past + q): query i (at position past + i) sees keys 0..past + i.

    A large finite negative instead of -inf keeps softmax finite in every runtime.
    """
    keys = np.arange(past + q)[None, :]  # (1, past + q)
    queries = past + np.arange(q)[:, None]  # (q, 1)
    blocked = keys > queries  # (q, past + q)
    mask = np.where(blocked, np.float32(np.finfo(np.float32).min), np.float32(0.0))
    return mask[None, None].astype(np.float32)


class _KVWrapper(nn.Module):
    """``forward(input_ids, position_ids, attention_mask, *past) -> (logits, *present)``."""

    def __init__(self, model: nn.Module, layout: KVLayout) -> None:
        super().__init__()
        self.model = model
        self.layout = layout
        params = inspect.signature(model.forward).parameters
        # transformers >= 5.2x renamed past_key_values to cache
        self.cache_arg = "cache" if "cache" in params else "past_key_values"

    def forward(self, input_ids, position_ids, attention_mask, *past):  # type: ignore[override]
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i, layer in enumerate(cache.layers):
            # set the tensors directly: DynamicLayer.update would concat onto an empty 1-D
            # tensor, which the converter cannot type
            layer.keys, layer.values = past[2 * i], past[2 * i + 1]
            layer.device, layer.is_initialized = past[0].device, True
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=True,
            **{self.cache_arg: cache},
        )
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def use_eager_attention(model: nn.Module) -> None:
    """Switch the model to eager attention (takes the 4-D additive mask as given)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    else:  # pragma: no cover - older transformers
        model.config._attn_implementation = "eager"


@torch.no_grad()
def convert_to_openvino(model: nn.Module) -> Any:
    """Trace ``model`` (fp32, CPU, eval) into an ``ov.Model`` with the named inputs / outputs
    of the module docstring. The model's attention is switched to eager."""
    import openvino as ov

    layout = KVLayout.of(model.config)
    if _plain_cache_layers(model) != layout.layers:
        raise ShearsError(
            f"model type {model.config.model_type!r} uses a cache of another kind (sliding or "
            "hybrid layers): shears deploy supports plain decoder caches (llama, qwen2, mistral)"
        )
    use_eager_attention(model)
    wrapper = _KVWrapper(model.eval(), layout)
    past, q = 3, 2  # an example with a non-empty cache: both lengths stay symbolic
    example = (
        torch.zeros(1, q, dtype=torch.long),
        torch.arange(past, past + q)[None],
        torch.from_numpy(causal_mask(q, past)),
        *[torch.zeros(1, layout.kv_heads, past, layout.head_dim) for _ in range(2 * layout.layers)],
    )
    kv_shape = ov.PartialShape([1, layout.kv_heads, -1, layout.head_dim])
    specs = [
        (INPUT_IDS, ov.PartialShape([1, -1]), ov.Type.i64),
        (POSITION_IDS, ov.PartialShape([1, -1]), ov.Type.i64),
        (ATTENTION_MASK, ov.PartialShape([1, 1, -1, -1]), ov.Type.f32),
        *[(n, kv_shape, ov.Type.f32) for n in layout.names("past")],
    ]
    ov_model = ov.convert_model(wrapper, example_input=example, input=[(s, t) for _, s, t in specs])
    for port, (name, _, _) in zip(ov_model.inputs, specs, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(ov_model.outputs, [LOGITS, *layout.names("present")], strict=True):
        port.get_tensor().set_names({name})
    return ov_model


def _plain_cache_layers(model: nn.Module) -> int | None:
    """Layers of the model's ``DynamicCache`` when all are plain (``None`` otherwise)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    return len(cache.layers)
