"""Running a deployed model: :class:`OVCausalLM` (compile, greedy decode with timings, profiling)
and pure functions over OpenVINO's profiling counters and IR weights.

Which layers ran the sparse kernel comes from the runtime: after an inference with ``PERF_COUNT``
on, each node reports the kernel it executed (``exec_type``); the sparse int8 kernel's name holds
``sparse`` (``brgemm_avx512_amx_sparse_I8``).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shears.deploy.convert import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    POSITION_IDS,
    KVLayout,
    causal_mask,
)

SPARSE_RATE_KEY = "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE"


# ---------------------------------------------------------------------------- pure functions


def kernel_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise profiling rows ``{"node", "type", "exec_type", "time_us"}`` of executed nodes:
    the matmul-like ones (FullyConnected, FullyConnectedCompressed, MatMul), which ran a kernel whose name holds
    ``sparse``, and a count per exec type."""
    fcs = [r for r in rows if r["type"].startswith("FullyConnected") or r["type"] == "MatMul"]
    sparse = [r for r in fcs if "sparse" in r["exec_type"].lower()]
    return {
        "matmul_layers": len(fcs),
        "sparse_kernel_layers": len(sparse),
        "sparse_kernel_used": bool(sparse),
        "exec_types": dict(Counter(r["exec_type"] for r in fcs)),
        "matmul_time_us": round(sum(r["time_us"] for r in fcs), 1),
        "sparse_time_us": round(sum(r["time_us"] for r in sparse), 1),
        "layers": [
            {"node": r["node"], "exec_type": r["exec_type"], "sparse": r in sparse} for r in fcs
        ],
    }


def layout_of(ov_model: Any) -> KVLayout:
    """The KV layout from the ``past.<i>.key`` inputs of a converted model."""
    past = [p for p in ov_model.inputs if p.get_any_name().startswith("past.")]
    if not past:
        raise ValueError("the OpenVINO model has no past.<i>.key inputs (not a shears deploy IR)")
    shape = past[0].get_partial_shape()
    return KVLayout(len(past) // 2, shape[1].get_length(), shape[3].get_length())


def _weight_constant(node: Any) -> Any | None:
    """Follow a matmul's weight input up through converts, scales, reshapes and fake-quantizes
    to its constant (``None`` when it is computed from activations)."""
    for _ in range(8):
        kind = node.get_type_name()
        if kind == "Constant":
            return node
        if kind not in ("Convert", "Multiply", "Subtract", "Reshape", "Transpose", "FakeQuantize"):
            return None
        node = node.input_value(0).get_node()
    return None


def ir_weight_sparsity(ov_model: Any, exclude: str | None = None) -> dict[str, Any]:
    """Exact zeros of the weight constants of every MatMul in an IR, as stored (i8 for int8
    precisions: a zero stays an exact 0 under symmetric quantization); matmuls whose name
    matches the regex ``exclude`` (a separate adapter's) are listed apart, not counted."""
    layers: dict[str, dict[str, Any]] = {}
    excluded: list[str] = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        if exclude and re.fullmatch(exclude, op.get_friendly_name()):
            excluded.append(op.get_friendly_name())
            continue
        const = _weight_constant(op.input_value(1).get_node())
        if const is None or len(const.get_output_shape(0)) != 2:
            continue
        data = const.get_data()
        layers[op.get_friendly_name()] = {
            "dtype": str(const.get_element_type().get_type_name()),
            "shape": list(data.shape),
            "zeros": int(data.size - np.count_nonzero(data)),
        }
    total = sum(int(np.prod(v["shape"])) for v in layers.values())
    zeros = sum(v["zeros"] for v in layers.values())
    return {
        "matmuls": len(layers),
        "sparsity": zeros / total if total else 0.0,
        "layers": layers,
        "excluded": excluded,
    }


def min_pruned_sparsity(sparsity: dict[str, Any], floor: float = 0.05) -> float | None:
    """Lowest zero fraction among the IR matmuls that were pruned (above ``floor``)."""
    fracs = [
        v["zeros"] / max(int(np.prod(v["shape"])), 1) for v in sparsity.get("layers", {}).values()
    ]
    pruned = [f for f in fracs if f > floor]
    return min(pruned) if pruned else None


# ---------------------------------------------------------------------------- runtime


@dataclass
class Generation:
    """Greedy tokens of one prompt and their timings."""

    tokens: list[int]
    ttft_s: float  # prefill + first token
    decode_s: list[float] = field(default_factory=list)  # one per later token
    first_logits: np.ndarray | None = None  # (vocab,) after the prompt

    @property
    def decode_tokens_per_s(self) -> float | None:
        total = sum(self.decode_s)
        return len(self.decode_s) / total if total > 0 else None


class OVCausalLM:
    """A compiled shears deploy IR on the CPU: greedy decoding with an explicit KV cache."""

    def __init__(
        self,
        model: str | Path | Any,
        properties: dict[str, Any] | None = None,
        perf_count: bool = False,
        device: str = "CPU",
    ) -> None:
        import openvino as ov

        core = ov.Core()
        self.ov_model = core.read_model(str(model)) if isinstance(model, (str, Path)) else model
        self.layout = layout_of(self.ov_model)
        props = dict(properties or {})
        if perf_count:
            props["PERF_COUNT"] = True
        self.properties = props
        self.compiled = core.compile_model(self.ov_model, device, props)
        self.request = self.compiled.create_infer_request()
        self._past_names = self.layout.names("past")
        self._present_names = self.layout.names("present")

    def step(
        self, ids: np.ndarray, past: list[np.ndarray], pos: int
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward: ids (1, q) at positions pos.. -> logits (1, q, vocab), the new cache."""
        q = ids.shape[1]
        feed = {
            INPUT_IDS: ids.astype(np.int64),
            POSITION_IDS: np.arange(pos, pos + q, dtype=np.int64)[None],
            ATTENTION_MASK: causal_mask(q, pos),
        }
        feed.update(zip(self._past_names, past, strict=True))
        out = self.request.infer(feed)
        logits = out[LOGITS]
        present = [np.array(out[n], copy=True) for n in self._present_names]
        return logits, present

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Logits (1, seq, vocab) of a whole sequence (empty cache)."""
        return self.step(np.asarray(ids).reshape(1, -1), self.layout.empty(), 0)[0].copy()

    def generate(
        self, prompt: list[int] | np.ndarray, max_new_tokens: int, eos: int | None = None
    ) -> Generation:
        """Greedy decoding of ``max_new_tokens`` (stops early at ``eos`` when given)."""
        ids = np.asarray(prompt, dtype=np.int64).reshape(1, -1)
        t0 = time.perf_counter()
        logits, past = self.step(ids, self.layout.empty(), 0)
        tok = int(logits[0, -1].argmax())
        gen = Generation([tok], time.perf_counter() - t0, first_logits=logits[0, -1].copy())
        pos = ids.shape[1]
        while len(gen.tokens) < max_new_tokens and tok != eos:
            t = time.perf_counter()
            logits, past = self.step(np.array([[tok]]), past, pos)
            pos += 1
            tok = int(logits[0, -1].argmax())
            gen.tokens.append(tok)
            gen.decode_s.append(time.perf_counter() - t)
        return gen

    def profiling_rows(self) -> list[dict[str, Any]]:
        """The last inference's executed nodes (needs ``perf_count=True``)."""
        rows = []
        for info in self.request.get_profiling_info():
            if str(info.status).endswith("NOT_RUN"):
                continue
            rows.append(
                {
                    "node": info.node_name,
                    "type": info.node_type,
                    "exec_type": info.exec_type,
                    "time_us": info.real_time.total_seconds() * 1e6,
                }
            )
        return rows
