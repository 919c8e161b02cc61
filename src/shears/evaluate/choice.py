"""Multiple choice: log-likelihood of each choice (lm-evaluation-harness style) and generation +
answer-word matching (LLM-Adapters style).

Log-likelihood: the context (the shared prompt of the question) and each choice are tokenised
separately and concatenated, as lm-evaluation-harness does; the score of a choice is the summed
log-probability of its tokens. Metrics as lm-evaluation-harness 0.4 computes them:
``acc`` = argmax of the sums, ``acc_norm`` = argmax of sum / ``len(choice)`` (characters; the
harness code divides by ``len(str)``), ``acc_bytes`` = argmax of sum / UTF-8 byte length. For
ASCII choices ``acc_norm == acc_bytes``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from shears.data.prompts import format_prompt
from shears.evaluate.extract import extract_answer_word
from shears.evaluate.generate import generate_answers, model_device


def _max_length(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


@torch.no_grad()
def loglikelihoods(
    model: nn.Module,
    tokenizer,
    requests: list[tuple[str, str]],
    style: str = "alpaca",
    batch_size: int = 16,
    progress: bool = False,
) -> list[tuple[float, bool]]:
    """``(sum log p(continuation | context), is_greedy)`` for each ``(context, continuation)``.

    The context is tokenised with special tokens (BOS) unless ``style == "chat"`` (the chat
    template holds them); the continuation without. Over-long inputs lose context tokens from the
    left. Requests are sorted by length to batch with little padding; results in input order.
    """
    device = model_device(model)
    special = style != "chat"
    max_len = _max_length(model)
    encoded: list[tuple[list[int], int]] = []  # (ids, n_continuation)
    ctx_cache: dict[str, list[int]] = {}
    for ctx, cont in requests:
        if ctx not in ctx_cache:
            ctx_cache[ctx] = tokenizer(ctx, add_special_tokens=special)["input_ids"]
        cont_ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
        if not cont_ids:
            raise ValueError(f"continuation {cont!r} encodes to no tokens")
        ids = ctx_cache[ctx] + cont_ids
        if max_len is not None and len(ids) > max_len:
            ids = ids[-max_len:]
        encoded.append((ids, len(cont_ids)))
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[tuple[float, bool]] = [(0.0, False)] * len(encoded)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(encoded), desc="loglikelihood", disable=not progress, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)  # (batch, seq)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(idx):
                seq = encoded[i][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logp = F.log_softmax(logits.float(), dim=-1)  # (batch, seq, vocab)
            for row, i in enumerate(idx):
                seq, n_cont = encoded[i]
                n = len(seq)
                # logits at position t predict token t + 1
                lp = logp[row, n - n_cont - 1 : n - 1]  # (n_cont, vocab)
                target = torch.tensor(seq[n - n_cont :], device=lp.device)  # (n_cont,)
                total = lp.gather(-1, target[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == target).all().item())
                out[i] = (total, greedy)
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return out


def choice_scores(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    progress: bool = False,
) -> list[list[float]]:
    """Log-likelihood of every choice of every example (``instruction``, optional ``input``,
    ``choices``: list of strings), given the shared prompt of the question.

    An ``answer_prefix`` in an example (e.g. ``"The answer is"``) is appended to the prompt and
    each choice is scored as `` <choice>`` after it, where a model tuned on such targets puts it.
    """
    requests: list[tuple[str, str]] = []
    for e in examples:
        ctx = format_prompt(e["instruction"], e.get("input", ""), style, tokenizer)
        prefix = e.get("answer_prefix") or ""
        requests.extend((ctx + prefix, f" {c}" if prefix else c) for c in e["choices"])
    flat = loglikelihoods(model, tokenizer, requests, style, batch_size, progress)
    scores, k = [], 0
    for e in examples:
        n = len(e["choices"])
        scores.append([s for s, _ in flat[k : k + n]])
        k += n
    return scores


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first of ties


def choice_predictions(scores: list[float], choices: list[str]) -> dict[str, int]:
    """Predicted indices under the three harness rules: ``acc``, ``acc_norm``, ``acc_bytes``."""
    return {
        "acc": _argmax(scores),
        "acc_norm": _argmax([s / max(1, len(c)) for s, c in zip(scores, choices, strict=True)]),
        "acc_bytes": _argmax(
            [s / max(1, len(c.encode("utf-8"))) for s, c in zip(scores, choices, strict=True)]
        ),
    }


def choice_metrics(
    scores: list[list[float]], examples: list[dict]
) -> tuple[dict[str, float], list[dict[str, int]]]:
    """Mean ``acc`` / ``acc_norm`` / ``acc_bytes`` over examples (``label``: gold index) and the
    per-example predictions."""
    preds = [choice_predictions(s, e["choices"]) for s, e in zip(scores, examples, strict=True)]
    n = max(1, len(examples))
    metrics = {
        m: sum(p[m] == e["label"] for p, e in zip(preds, examples, strict=True)) / n
        for m in ("acc", "acc_norm", "acc_bytes")
    }
    return metrics, preds


# ---------------------------------------------------------------------------- by generation


def answer_words(example: dict) -> list[str]:
    """The answer words a generated answer is matched against (``answer1``... by default)."""
    return list(example.get("answer_words") or [])


def generation_choice_accuracy(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    max_new_tokens: int = 32,
    progress: bool = False,
) -> tuple[float, list[dict]]:
    """LLM-Adapters-style multiple choice: generate, take the first allowed answer word
    (``answer_words``) in the output, compare with ``answer``. Returns accuracy and per-example
    records (``output``, ``extracted``, ``correct``)."""
    outputs = generate_answers(
        model, tokenizer, examples, style, batch_size, max_new_tokens, progress
    )
    records = []
    for e, out in zip(examples, outputs, strict=True):
        word = extract_answer_word(out, answer_words(e))
        ok = word is not None and word.lower() == str(e["answer"]).lower()
        records.append({"output": out, "extracted": word, "correct": ok})
    acc = sum(r["correct"] for r in records) / max(1, len(records))
    return acc, records
