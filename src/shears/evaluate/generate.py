"""Greedy batched generation with left padding and the KV cache (``model.generate``); sampling
(temperature, top-p) on request, for ``shears generate``.

Prompts are sorted by length before batching (less padding), and answers come back in the input
order. Prompt + ``max_new_tokens`` must fit the model's maximum positions: ``max_new_tokens`` at or
above them is a ShearsError; a prompt longer than the rest is cut from the left (its last tokens,
next to where the answer starts, are kept, as lm-evaluation-harness does) and a warning counts
them. Left padding plus the attention mask make a prompt's answer independent of its batch
neighbours, so batch size changes speed, not answers (up to float rounding). Under data-parallel
evaluation (:mod:`shears.evaluate.parallel`) each process runs whole batches of that order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from shears.context import check_length
from shears.data.prompts import check_style, format_prompt
from shears.evaluate.extract import ALPACA_STOP, clean_output
from shears.evaluate.parallel import SINGLE, DataParallel, merge_indexed
from shears.models import ContextLimit, max_positions

logger = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """Decoded continuations (special tokens removed), the count of generated tokens, and the
    seconds of the batch each continuation was generated in."""

    texts: list[str]
    new_tokens: int = 0
    per_example_tokens: list[int] = field(default_factory=list)
    truncated_prompts: int = 0
    per_example_time_s: list[float] = field(default_factory=list)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def build_prompts(examples: list[dict], style: str, tokenizer) -> list[str]:
    """Shared-prompt-module text of each example (``instruction`` + optional ``input``)."""
    check_style(style)
    return [format_prompt(e["instruction"], e.get("input", ""), style, tokenizer) for e in examples]


def _encode(tokenizer, prompts: list[str], style: str) -> list[list[int]]:
    special = style != "chat"  # a chat template already carries its special tokens
    return [tokenizer(p, add_special_tokens=special)["input_ids"] for p in prompts]


def fit_prompts(
    encoded: list[list[int]], max_new_tokens: int, limit: ContextLimit | None
) -> tuple[list[list[int]], int]:
    """``(prompts, cut)``: each prompt cut from the left to ``limit - max_new_tokens`` tokens, and
    how many were cut (logged as a warning). ``max_new_tokens`` that leaves no position for a
    prompt is a ShearsError; ``limit`` None (no limit) changes nothing."""
    if limit is None:
        return encoded, 0
    check_length(max_new_tokens, "--max-new-tokens", limit, reserve=1)
    room = limit.positions - max_new_tokens
    cut = sum(len(e) > room for e in encoded)
    if cut:
        logger.warning(
            "%d of %d prompts are longer than the model's %d positions (%s) less "
            "--max-new-tokens %d: cut from the left to their last %d tokens",
            cut,
            len(encoded),
            limit.positions,
            limit.key,
            max_new_tokens,
            room,
        )
        encoded = [e[-room:] if len(e) > room else e for e in encoded]
    return encoded, cut


def pad_left(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(ids, mask)``, each (batch, max_len)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # (batch, seq)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


@dataclass(frozen=True)
class _Decoding:
    """The settings of generation: the ``GenerationConfig`` and the ids it was built from (pad:
    the tokenizer's, else eos, else 0). Greedy unless ``temperature`` > 0 (then sampling, with
    nucleus ``top_p``)."""

    config: Any  # transformers.GenerationConfig
    pad_id: int
    eos_id: int | None
    stop_strings: list[str] | None

    @classmethod
    def of(
        cls,
        tokenizer,
        max_new_tokens: int,
        stop_strings: list[str] | None,
        temperature: float = 0.0,
        top_p: float = 1.0,
    ) -> _Decoding:
        from transformers import GenerationConfig

        pad_id, eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        if pad_id is None:
            pad_id = eos_id if eos_id is not None else 0
        sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=bool(sampling),
            num_beams=1,
            use_cache=True,
            pad_token_id=pad_id,
            eos_token_id=eos_id,
            stop_strings=stop_strings or None,
            **sampling,
        )
        return cls(config, pad_id, eos_id, stop_strings)


@torch.no_grad()
def _generate_batch(
    model: nn.Module, tokenizer, rows: list[list[int]], greedy: _Decoding
) -> list[list[int]]:
    """New token ids of each prompt of one batch, up to and including the first eos."""
    ids, mask = pad_left(rows, greedy.pad_id)  # (batch, seq)
    device = model_device(model)
    kwargs = {"tokenizer": tokenizer} if greedy.stop_strings else {}
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        generation_config=greedy.config,
        **kwargs,
    )  # (batch, seq + new)
    new = out[:, ids.shape[1] :].cpu()  # (batch, new)
    eos = greedy.eos_id
    toks = [row.tolist() for row in new]
    return [t[: t.index(eos) + 1] if eos is not None and eos in t else t for t in toks]


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: list[str],
    style: str = "alpaca",
    batch_size: int = 16,
    max_new_tokens: int = 256,
    stop_strings: list[str] | None = None,
    progress: bool = False,
    desc: str = "generate",
    parallel: DataParallel = SINGLE,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> GenerationResult:
    """Greedy continuations of ``prompts`` (already formatted), batched with left padding
    (``temperature`` > 0: sampled, with nucleus ``top_p``; the caller seeds torch).

    ``stop_strings`` end a sequence early (a finished row is padded while the batch goes on).
    Prompts longer than the model's positions less ``max_new_tokens`` are cut from the left
    (:func:`fit_prompts`). Returns the raw decoded continuations in input order (on every
    process of ``parallel``, which share the batches round-robin).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not prompts:
        return GenerationResult([], 0, [])
    encoded, cut = fit_prompts(
        _encode(tokenizer, prompts, style), max_new_tokens, max_positions(model)
    )
    greedy = _Decoding.of(tokenizer, max_new_tokens, stop_strings, temperature, top_p)
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # longest first
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    mine = [idx for b, idx in enumerate(batches) if parallel.mine(b)]
    done: list[tuple[int, tuple[str, int, float]]] = []  # (prompt, (text, new tokens, s))
    was_training = model.training
    model.eval()
    bar = tqdm(total=sum(map(len, mine)), desc=desc, disable=not progress, leave=False)
    try:
        for idx in mine:
            t0 = time.perf_counter()
            new = _generate_batch(model, tokenizer, [encoded[i] for i in idx], greedy)
            dt = time.perf_counter() - t0
            for i, toks in zip(idx, new, strict=True):
                text = tokenizer.decode(toks, skip_special_tokens=True)
                done.append((i, (text, len(toks), dt)))
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    results = merge_indexed(parallel.gather(done), len(prompts))
    counts = [c for _, c, _ in results]
    secs = [s for _, _, s in results]
    return GenerationResult([t for t, _, _ in results], sum(counts), counts, cut, secs)


def default_stop_strings(style: str) -> list[str]:
    """Alpaca: stop when the model starts a new ``### `` section; chat: EOS is enough."""
    return [ALPACA_STOP] if style == "alpaca" else []


def generate_answers(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    max_new_tokens: int = 256,
    progress: bool = False,
    parallel: DataParallel = SINGLE,
) -> list[str]:
    """Greedy answers to ``examples`` (dicts with ``instruction`` and optional ``input``), in the
    shared prompt format ``style``; each answer is cut at a new Alpaca section and stripped."""
    prompts = build_prompts(examples, style, tokenizer)
    res = generate(
        model,
        tokenizer,
        prompts,
        style,
        batch_size,
        max_new_tokens,
        default_stop_strings(style),
        progress,
        parallel=parallel,
    )
    return [clean_output(t, style) for t in res.texts]
