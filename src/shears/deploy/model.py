"""A deployed folder as a model the other stages can run: :class:`DeployedModel` answers
``model.generate(...)`` (greedy, as :mod:`shears.evaluate.generate` calls it) and
``model(input_ids=..., attention_mask=...)`` (whole-sequence logits, for perplexity) with the
OpenVINO IR, so accuracy is measured on what ships.

Hook for ``shears eval --model DEPLOYED`` / ``shears generate``: in
:func:`shears.models.load_model`, ``if is_deployed(spec): return load_deployed(spec)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from shears.errors import ShearsError

RESULTS = "deploy_results.json"
IR_XML = "openvino_model.xml"
CACHE_KEYS = ("past_key_values", "cache")


def is_deployed(spec: str | Path | None) -> bool:
    """Whether ``spec`` is a ``shears deploy`` output folder."""
    return spec is not None and (Path(spec) / RESULTS).is_file() and (Path(spec) / IR_XML).is_file()


def _stops(text: str, stop_strings: list[str] | None) -> bool:
    return bool(stop_strings) and any(s in text for s in stop_strings)


class DeployedModel(nn.Module):
    """The IR of a deploy folder behind the slice of the ``transformers`` model API that
    shears' evaluation uses (batch rows run one by one: the IR takes batch 1)."""

    def __init__(self, folder: str | Path, properties: dict[str, Any] | None = None) -> None:
        super().__init__()
        from transformers import AutoConfig

        from shears.deploy.runtime import OVCausalLM

        folder = Path(folder)
        if not is_deployed(folder):
            raise ShearsError(f"{str(folder)!r} is not a `shears deploy` output (no {RESULTS})")
        results = json.loads((folder / RESULTS).read_text())
        props = results.get("runtime_properties", {}) if properties is None else properties
        self.runtime = OVCausalLM(folder / IR_XML, props)
        self.config = AutoConfig.from_pretrained(folder)
        self.precision = results.get("precision")
        self._ir_sparsity = (results.get("ir_sparsity") or {}).get("sparsity")
        self.name_or_path = str(folder)
        self._device_anchor = nn.Parameter(torch.zeros(1), requires_grad=False)  # model_device

    def parameter_counts(self) -> dict[str, float | int | None]:
        """What an evaluation reports for the IR: the zero fraction of its matmul weights (counted
        in the written IR by ``shears deploy``); parameter totals are not known here (``None``)."""
        keys = ("parameters", "nonzero_parameters", "sparsity", "adapter_parameters")
        return {**dict.fromkeys(keys), "linear_sparsity": self._ir_sparsity, "deployed": True}

    def forward(self, input_ids=None, attention_mask=None, **kwargs):  # noqa: ANN001
        """Logits (batch, seq, vocab) of whole sequences (left padding allowed; padded
        positions get zero logits)."""
        if kwargs.get("use_cache") or any(kwargs.get(k) is not None for k in CACHE_KEYS):
            raise ShearsError(
                "a deployed model scores whole sequences only (no KV-cache reuse, as "
                "multiple-choice scoring does): evaluate it on generation tasks (gsm_symbolic) "
                "or perplexity"
            )
        ids = input_ids.cpu()
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.cpu()
        rows = []
        for row, m in zip(ids, mask, strict=True):
            keep = m.bool()
            logits = np.zeros((ids.shape[1], self.config.vocab_size), np.float32)
            if keep.any():
                logits[keep.numpy()] = self.runtime.logits(row[keep].numpy())[0]
            rows.append(torch.from_numpy(logits))
        return SimpleNamespace(logits=torch.stack(rows), past_key_values=None)

    @torch.no_grad()
    def generate(
        self, input_ids, attention_mask=None, generation_config=None, tokenizer=None, **kw
    ):  # noqa: ANN001
        """Greedy continuations, each row stopping at EOS or a stop string; (batch, seq + new)
        with finished rows padded, as ``transformers`` returns them."""
        cfg = generation_config
        if getattr(cfg, "do_sample", False) or kw.get("do_sample"):
            raise ShearsError("a deployed model generates greedily only; sampling is not supported")
        max_new = getattr(cfg, "max_new_tokens", None) or kw.get("max_new_tokens", 32)
        eos = getattr(cfg, "eos_token_id", None)
        pad = getattr(cfg, "pad_token_id", None)
        pad = pad if pad is not None else (eos if eos is not None else 0)
        stops = getattr(cfg, "stop_strings", None)
        ids = input_ids.cpu()
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.cpu()
        news = []
        for row, m in zip(ids, mask, strict=True):
            prompt = row[m.bool()].tolist()
            news.append(self._greedy(prompt, max_new, eos, stops, tokenizer))
        width = max(len(n) for n in news)
        out = torch.full((ids.shape[0], ids.shape[1] + width), pad, dtype=torch.long)
        out[:, : ids.shape[1]] = ids
        for i, n in enumerate(news):
            out[i, ids.shape[1] : ids.shape[1] + len(n)] = torch.tensor(n, dtype=torch.long)
        return out

    def _greedy(self, prompt: list[int], max_new: int, eos, stops, tokenizer) -> list[int]:  # noqa: ANN001
        rt = self.runtime
        logits, past = rt.step(np.array([prompt]), rt.layout.empty(), 0)
        pos, toks = len(prompt), []
        while True:
            tok = int(logits[0, -1].argmax())
            toks.append(tok)
            if tok == eos or len(toks) >= max_new:
                return toks
            if stops and tokenizer is not None and _stops(tokenizer.decode(toks), stops):
                return toks
            logits, past = rt.step(np.array([[tok]]), past, pos)
            pos += 1


def load_deployed(folder: str | Path) -> tuple[DeployedModel, Any]:
    """``(model, tokenizer)`` of a deploy folder, as :func:`shears.models.load_model` returns."""
    from transformers import AutoTokenizer

    model = DeployedModel(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.eval(), tok
