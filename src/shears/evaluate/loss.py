"""Validation loss on answer tokens only: a cheap, generation-free score for the search."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shears.data.tokenize import IGNORE_INDEX, encode_example, pad_batch
from shears.evaluate.generate import model_device


@torch.no_grad()
def answer_loss(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    cutoff_len: int = 256,
) -> float:
    """Mean negative log-likelihood (nats per token) over the answer tokens of ``examples``.

    Each example is encoded by ``data.tokenize.encode_example`` with ``train_on_inputs=False``
    (prompt tokens are -100, the ``output`` text and EOS are scored). The mean is over all answer
    tokens of all examples (token-weighted, as a training loss over the same batch would be).
    Examples whose answer is cut away by ``cutoff_len`` add nothing. Raises a ValueError when no
    example has an answer token.
    """
    device = model_device(model)
    feats = [
        encode_example(tokenizer, e, style, cutoff_len, train_on_inputs=False) for e in examples
    ]
    order = sorted(range(len(feats)), key=lambda i: -len(feats[i]["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = pad_batch([feats[i] for i in order[start : start + batch_size]], pad)
            logits = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
            ).logits  # (batch, seq, vocab)
            labels = batch["labels"].to(device)[:, 1:]  # (batch, seq - 1)
            shifted = logits[:, :-1].float()  # position t predicts token t + 1
            nll = F.cross_entropy(
                shifted.reshape(-1, shifted.shape[-1]),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            total += nll.item()
            count += int((labels != IGNORE_INDEX).sum().item())
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no answer tokens to score (empty outputs or all cut by cutoff_len)")
    return total / count
