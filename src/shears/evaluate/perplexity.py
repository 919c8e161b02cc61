"""Sliding-window perplexity over a token stream, as the pruning literature reports it.

Under data-parallel evaluation (:mod:`shears.evaluate.parallel`) each process scores whole batches
of windows and the per-window sums are added in window order on every process: the same sum as
one process makes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from shears.context import check_length
from shears.evaluate.parallel import SINGLE, DataParallel, merge_indexed
from shears.models import max_positions


def _as_stream(tokenizer: object, texts_or_ids: object) -> torch.Tensor:
    """A 1-D LongTensor of ids from a string, a list of strings (joined by EOS) or ids."""
    if isinstance(texts_or_ids, torch.Tensor):
        return texts_or_ids.reshape(-1).long()
    if isinstance(texts_or_ids, str):
        texts_or_ids = [texts_or_ids]
    if isinstance(texts_or_ids, Sequence) and texts_or_ids and isinstance(texts_or_ids[0], int):
        return torch.tensor(list(texts_or_ids), dtype=torch.long)
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for i, text in enumerate(texts_or_ids):  # type: ignore[union-attr]
        if i and eos is not None:
            ids.append(eos)
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    return torch.tensor(ids, dtype=torch.long)


def window_batches(windows: list[tuple[int, int, int]], batch_size: int) -> list[list[int]]:
    """Indices of ``(begin, end, first)`` windows in batches of up to ``batch_size`` consecutive
    windows of one length (only the last window may be shorter: it starts its own batch)."""
    batches: list[list[int]] = []
    i = 0
    while i < len(windows):
        length = windows[i][1] - windows[i][0]
        stop = min(i + batch_size, len(windows))
        group = [j for j in range(i, stop) if windows[j][1] - windows[j][0] == length]
        batches.append(group)
        i += len(group)
    return batches


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokenizer: object,
    texts_or_ids: str | Sequence[str] | Sequence[int] | torch.Tensor,
    seqlen: int = 512,
    stride: int | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    parallel: DataParallel = SINGLE,
) -> float:
    """``exp(mean NLL)`` of every token but the first, windows of ``seqlen`` moved by ``stride``.

    Each window scores only the tokens the previous window did not (``stride == seqlen``, the
    default, gives disjoint windows; a smaller stride gives every token more context).
    ``seqlen`` above the model's maximum positions is a ShearsError. ``parallel``: the processes
    that share the batches of windows (every one returns the same value).
    """
    check_length(seqlen, "seqlen", max_positions(model))
    stride = stride or seqlen
    if not 0 < stride <= seqlen:
        raise ValueError(f"stride {stride} must be in [1, seqlen={seqlen}]")
    ids = _as_stream(tokenizer, texts_or_ids)  # (tokens,)
    if ids.numel() < 2:
        raise ValueError("perplexity needs at least 2 tokens")
    device = torch.device(device) if device is not None else next(model.parameters()).device

    # (begin, end, first scored position inside the window)
    windows: list[tuple[int, int, int]] = []
    prev_end = 0
    for begin in range(0, ids.numel(), stride):
        end = min(begin + seqlen, ids.numel())
        first = max(prev_end - begin, 1)  # position 0 of a window has no prediction
        if first < end - begin:
            windows.append((begin, end, first))
        prev_end = end
        if end == ids.numel():
            break

    batches = window_batches(windows, batch_size)
    was_training = model.training
    model.eval()
    done: list[tuple[int, tuple[float, int]]] = []  # (window, (summed NLL, scored tokens))
    for b, group in enumerate(batches):
        if not parallel.mine(b):
            continue
        length = windows[group[0]][1] - windows[group[0]][0]
        batch = torch.stack([ids[windows[j][0] : windows[j][1]] for j in group]).to(device)
        logits = model(input_ids=batch, use_cache=False).logits  # (batch, length, vocab)
        for row, j in enumerate(group):
            first = windows[j][2]
            pred = logits[row, first - 1 : length - 1].float()  # (scored, vocab)
            target = batch[row, first:length]
            window_nll = float(F.cross_entropy(pred, target, reduction="sum"))
            done.append((j, (window_nll, target.numel())))
    model.train(was_training)
    nll, count = 0.0, 0
    for window_nll, n in merge_indexed(parallel.gather(done), len(windows)):
        nll += window_nll
        count += n
    return math.exp(nll / count)
