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

import inspect
import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from shears.data.prompts import format_prompt
from shears.errors import ShearsError
from shears.evaluate.extract import extract_answer_word
from shears.evaluate.generate import generate_answers, model_device, pad_left
from shears.evaluate.parallel import SINGLE, DataParallel, merge_indexed
from shears.models import max_positions

logger = logging.getLogger(__name__)


def _accepts(model: nn.Module, name: str) -> bool:
    """Whether the (unwrapped) model's forward takes keyword ``name``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def _cache_keyword(model: nn.Module) -> str | None:
    """The forward keyword of the KV cache: ``cache`` (transformers >= 5.2x), else the older
    ``past_key_values``; None when the model takes neither."""
    for name in ("cache", "past_key_values"):
        if _accepts(model, name):
            return name
    return None


@torch.no_grad()
def _continuation_pass(
    model: nn.Module,
    cache,
    cache_kw: str,
    ctx_mask: torch.Tensor,
    flat: list[list[int]],
    idx: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    """Log-probabilities ``(N, longest - 1, vocab)`` of every continuation's tokens after its
    first, run against the cache rows of its context (``idx``: the context row of each)."""
    device = model_device(model)
    cache.batch_select_indices(idx.to(device))
    n, width = len(flat), max(len(c) for c in flat) - 1
    cin = torch.full((n, width), pad, dtype=torch.long)
    cmask = torch.zeros_like(cin)
    for i, c in enumerate(flat):
        cin[i, : len(c) - 1] = torch.tensor(c[:-1])
        cmask[i, : len(c) - 1] = 1
    ctx_len = ctx_mask.sum(-1)[idx.cpu()]  # (N,)
    cpos = ctx_len[:, None] + torch.arange(width)[None]  # (N, width)
    out = model(
        input_ids=cin.to(device),
        attention_mask=torch.cat([ctx_mask[idx.cpu()], cmask], 1).to(device),
        position_ids=cpos.to(device),
        use_cache=True,
        **{cache_kw: cache},
    )
    return F.log_softmax(out.logits.float(), dim=-1)  # (N, width, vocab)


@torch.no_grad()
def _shared_context_batch(
    model: nn.Module, contexts: list[list[int]], conts: list[list[list[int]]], pad: int
) -> list[list[tuple[float, bool]]]:
    """Score every continuation of every context, running each context once.

    Pass 1 runs the left-padded contexts with a KV cache (logits at the last position only: they
    score the first continuation token). Pass 2 (:func:`_continuation_pass`), needed only when a
    continuation is longer than one token, runs all continuations but their last token against
    the cache rows of their context (explicit position ids continue each context). Same sums as
    scoring ``context + continuation`` whole, at about 1/len(choices) of the cost for short
    choices.
    """
    device = model_device(model)
    ids, mask = pad_left(contexts, pad)  # (B, W)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=pos.to(device),
        use_cache=True,
        **keep,
    )
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, vocab)
    rows = [b for b, cs in enumerate(conts) for _ in cs]
    flat = [c for cs in conts for c in cs]
    idx = torch.tensor(rows, device=first.device)
    head = torch.tensor([c[0] for c in flat], device=first.device)
    total = first[idx, head]  # (N,)
    greedy = first[idx].argmax(-1) == head  # (N,)
    if max(len(c) for c in flat) > 1:
        cache_kw = _cache_keyword(model)
        logp = _continuation_pass(model, getattr(out, cache_kw), cache_kw, mask, flat, idx, pad)
        for i, c in enumerate(flat):
            if len(c) > 1:
                target = torch.tensor(c[1:], device=logp.device)
                lp = logp[i, : len(c) - 1]  # (len - 1, vocab)
                total[i] = total[i] + lp.gather(-1, target[:, None]).sum()
                greedy[i] = greedy[i] & bool((lp.argmax(-1) == target).all())
    res, k = [], 0
    for cs in conts:
        res.append([(float(total[k + j]), bool(greedy[k + j])) for j in range(len(cs))])
        k += len(cs)
    return res


@torch.no_grad()
def _whole_sequence_batch(
    model: nn.Module, seqs: list[tuple[list[int], int]], pad: int
) -> list[tuple[float, bool]]:
    """Score ``(ids, n_continuation)`` pairs by running each whole sequence (right-padded)."""
    device = model_device(model)
    width = max(len(s) for s, _ in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # (batch, seq)
    mask = torch.zeros_like(ids)
    for row, (seq, _) in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    logp = F.log_softmax(logits.float(), dim=-1)  # (batch, seq, vocab)
    out = []
    for row, (seq, n_cont) in enumerate(seqs):
        n = len(seq)
        lp = logp[row, n - n_cont - 1 : n - 1]  # logits at t predict token t + 1: (n_cont, vocab)
        target = torch.tensor(seq[n - n_cont :], device=lp.device)  # (n_cont,)
        total = lp.gather(-1, target[:, None]).sum().item()
        out.append((total, bool((lp.argmax(-1) == target).all().item())))
    return out


@dataclass
class _Requests:
    """Tokenised requests, split by how they are scored.

    ``groups``: context -> ``[(request index, continuation ids)]``, scored from the context's KV
    cache; ``whole``: ``(request index, ids, n_continuation)``, each run whole; ``cut``: requests
    whose context was cut from the left to fit.
    """

    ctx_ids: dict[str, list[int]] = field(default_factory=dict)
    groups: dict[str, list[tuple[int, list[int]]]] = field(default_factory=dict)
    whole: list[tuple[int, list[int], int]] = field(default_factory=list)
    cut: int = 0


def _tokenize_requests(
    tokenizer, requests: list[tuple[str, str]], special: bool, limit, share_context: bool
) -> _Requests:
    """Tokenise each ``(context, continuation)`` once per distinct context and sort it into a
    shared-context group or the whole-sequence list (a context too long is cut from the left)."""
    max_len = limit.positions if limit is not None else None
    r = _Requests()
    for i, (ctx, cont) in enumerate(requests):
        if ctx not in r.ctx_ids:
            r.ctx_ids[ctx] = tokenizer(ctx, add_special_tokens=special)["input_ids"]
        cont_ids = tokenizer(cont, add_special_tokens=False)["input_ids"]
        if not cont_ids:
            raise ValueError(f"continuation {cont!r} encodes to no tokens")
        if max_len is not None and len(cont_ids) >= max_len:
            raise ShearsError(
                f"the choice {cont.strip()[:40]!r} is {len(cont_ids)} tokens: with a context it "
                f"exceeds the model's {max_len} positions ({limit.key}); shorten the choices"
            )
        ids = r.ctx_ids[ctx] + cont_ids
        fits = max_len is None or len(ids) <= max_len
        r.cut += not fits
        if share_context and fits and r.ctx_ids[ctx]:
            r.groups.setdefault(ctx, []).append((i, cont_ids))
        else:
            r.whole.append((i, ids if fits else ids[-max_len:], len(cont_ids)))
    if r.cut:
        logger.warning(
            "%d of %d multiple-choice requests (context + choice) are longer than the model's %d "
            "positions (%s): their contexts were cut from the left",
            r.cut,
            len(requests),
            max_len,
            limit.key,
        )
    return r


def _score_requests(
    model: nn.Module, r: _Requests, pad: int, batch_size: int, parallel: DataParallel, bar
) -> list[tuple[int, tuple[float, bool]]]:
    """``(request index, (sum log p, is_greedy))`` of the batches of this process: the
    shared-context groups (``batch_size`` contexts per forward), then the whole sequences
    (``batch_size`` each); batches are numbered across both for ``parallel``'s round-robin."""
    ctxs = sorted(r.groups, key=lambda c: -len(r.ctx_ids[c]))  # similar lengths: little padding
    shared = [ctxs[s : s + batch_size] for s in range(0, len(ctxs), batch_size)]
    whole = sorted(r.whole, key=lambda w: -len(w[1]))
    runs = [whole[s : s + batch_size] for s in range(0, len(whole), batch_size)]
    done: list[tuple[int, tuple[float, bool]]] = []
    for b, batch in enumerate(shared):
        if not parallel.mine(b):
            continue
        scores = _shared_context_batch(
            model,
            [r.ctx_ids[c] for c in batch],
            [[cont for _, cont in r.groups[c]] for c in batch],
            pad,
        )
        for c, sc in zip(batch, scores, strict=True):
            done.extend((i, s) for (i, _), s in zip(r.groups[c], sc, strict=True))
            bar.update(len(sc))
    for b, run in enumerate(runs, start=len(shared)):
        if not parallel.mine(b):
            continue
        scores = _whole_sequence_batch(model, [(ids, n) for _, ids, n in run], pad)
        done.extend((i, s) for (i, _, _), s in zip(run, scores, strict=True))
        bar.update(len(run))
    return done


@torch.no_grad()
def loglikelihoods(
    model: nn.Module,
    tokenizer,
    requests: list[tuple[str, str]],
    style: str = "alpaca",
    batch_size: int = 16,
    progress: bool = False,
    share_context: bool = True,
    parallel: DataParallel = SINGLE,
) -> list[tuple[float, bool]]:
    """``(sum log p(continuation | context), is_greedy)`` for each ``(context, continuation)``.

    The context is tokenised with special tokens (BOS) unless ``style == "chat"`` (the chat
    template holds them); the continuation without. With ``share_context`` the requests that
    share a context (the choices of one question) run that context once and score every
    continuation from its KV cache (``batch_size`` contexts per forward); otherwise, and for
    requests longer than the model's positions, every sequence runs whole (``batch_size``
    sequences per forward). Results in input order.

    Context + continuation longer than the model's maximum positions: the context is cut from the
    left (a warning counts such requests); a continuation that alone leaves no position for a
    context token is a ShearsError. ``parallel``: the processes that share the batches (every
    one gets all results).
    """
    share_context = (
        share_context and _cache_keyword(model) is not None and _accepts(model, "position_ids")
    )
    r = _tokenize_requests(
        tokenizer, requests, style != "chat", max_positions(model), share_context
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    total = len(requests) if parallel.world == 1 else None  # a process's share is not known
    bar = tqdm(total=total, desc="loglikelihood", disable=not progress, leave=False)
    try:
        done = _score_requests(model, r, pad, batch_size, parallel, bar)
    finally:
        bar.close()
        model.train(was_training)
    return merge_indexed(parallel.gather(done), len(requests))


def choice_scores(
    model: nn.Module,
    tokenizer,
    examples: list[dict],
    style: str = "alpaca",
    batch_size: int = 16,
    progress: bool = False,
    share_context: bool = True,
    parallel: DataParallel = SINGLE,
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
    flat = loglikelihoods(
        model, tokenizer, requests, style, batch_size, progress, share_context, parallel
    )
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
    parallel: DataParallel = SINGLE,
) -> tuple[float, list[dict]]:
    """LLM-Adapters-style multiple choice: generate, take the first allowed answer word
    (``answer_words``) in the output, compare with ``answer``. Returns accuracy and per-example
    records (``output``, ``extracted``, ``correct``)."""
    outputs = generate_answers(
        model, tokenizer, examples, style, batch_size, max_new_tokens, progress, parallel
    )
    records = []
    for e, out in zip(examples, outputs, strict=True):
        word = extract_answer_word(out, answer_words(e))
        ok = word is not None and word.lower() == str(e["answer"]).lower()
        records.append({"output": out, "extracted": word, "correct": ok})
    acc = sum(r["correct"] for r in records) / max(1, len(records))
    return acc, records
