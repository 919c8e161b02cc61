"""Calibration and held-out text as tokens: a text source (see :mod:`shears.data.spec`), read
through :func:`shears.data.sources.read_texts`, tokenised into a stream and cut into windows.

A *source* is ``"default"`` (offline reasoning-gym text: two disjoint streams, ``calibration``
and ``heldout`` for perplexity), a text file, a JSON / JSONL file (text in ``text_field``) or a
``datasets`` dataset (column ``text_field``, split ``data_split``, rows shuffled with the seed).
Memory stays bounded: texts are read lazily and tokenised until ``max_tokens`` tokens are held (by
default twice what the windows need), then the stream stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import torch

from shears.data.sources import read_texts
from shears.data.spec import DEFAULT_TEXT, DataSpec, validate_source
from shears.errors import ShearsError

logger = logging.getLogger(__name__)


def iter_texts(
    source: str,
    text_field: str = "text",
    data_config: str | None = None,
    data_split: str = "train",
    seed: int = 0,
    default_split: str = "calibration",
    what: str = "--calibration",
) -> Iterator[str]:
    """Documents of ``source``, lazily: ``data_split`` of a dataset, ``default_split`` of the
    default text; ``what`` names the flag in errors."""
    validate_source(source, what)
    split = default_split if source == DEFAULT_TEXT else data_split
    return read_texts(DataSpec.text(source, text_field, data_config, split, seed), what)


# ---------------------------------------------------------------------------- tokens


def token_stream(
    tokenizer: object, texts: Iterable[str], max_tokens: int, separator: bool = True
) -> torch.Tensor:
    """Tokenise ``texts`` into one 1-D LongTensor of at most ``max_tokens`` ids.

    Documents are joined with the tokenizer's EOS id when ``separator`` (and one exists).
    """
    eos = getattr(tokenizer, "eos_token_id", None) if separator else None
    parts: list[torch.Tensor] = []
    total = 0
    for text in texts:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids = list(ids) + [eos]
        parts.append(torch.tensor(ids[: max_tokens - total], dtype=torch.long))
        total += parts[-1].numel()
        if total >= max_tokens:
            break
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def sample_windows(ids: torch.Tensor, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    """``nsamples`` non-overlapping windows of ``seqlen`` tokens, chosen with ``seed``.

    Returns (nsamples, seqlen). Raises a ShearsError when ``ids`` is too short.
    """
    need = nsamples * seqlen
    if ids.numel() < need:
        raise ShearsError(
            f"calibration text gives only {ids.numel()} tokens; --nsamples {nsamples} x "
            f"--seqlen {seqlen} needs {need}: give more text or lower them"
        )
    gen = torch.Generator().manual_seed(seed)
    slots = ids.numel() // seqlen
    offset = int(torch.randint(0, ids.numel() - slots * seqlen + 1, (1,), generator=gen))
    chosen = torch.randperm(slots, generator=gen)[:nsamples].sort().values  # (nsamples,)
    starts = offset + chosen * seqlen
    return torch.stack([ids[s : s + seqlen] for s in starts.tolist()])  # (nsamples, seqlen)


def calibration_ids(
    tokenizer: object,
    source: str = DEFAULT_TEXT,
    nsamples: int = 128,
    seqlen: int = 512,
    seed: int = 0,
    text_field: str = "text",
    data_config: str | None = None,
    data_split: str = "train",
    oversample: float = 2.0,
) -> torch.Tensor:
    """Token windows (nsamples, seqlen) for calibration, read from ``source``.

    At most ``oversample * nsamples * seqlen`` tokens are read; windows are drawn from them.
    """
    texts = iter_texts(source, text_field, data_config, data_split, seed, "calibration")
    return windows_from_texts(tokenizer, texts, nsamples, seqlen, seed, oversample, source)


def windows_from_texts(
    tokenizer: object,
    texts: Iterable[str],
    nsamples: int,
    seqlen: int,
    seed: int = 0,
    oversample: float = 2.0,
    name: str = "text",
) -> torch.Tensor:
    """Token windows (nsamples, seqlen) drawn from the documents ``texts`` (joined with EOS);
    at most ``oversample * nsamples * seqlen`` tokens are read. ``name`` is logged."""
    ids = token_stream(
        tokenizer, texts, max(int(oversample * nsamples * seqlen), nsamples * seqlen)
    )
    logger.info("calibration: %d tokens read from %s", ids.numel(), name)
    return sample_windows(ids, nsamples, seqlen, seed)


def heldout_ids(
    tokenizer: object,
    source: str = DEFAULT_TEXT,
    max_tokens: int = 16384,
    text_field: str = "text",
    data_config: str | None = None,
    data_split: str = "test",
) -> torch.Tensor:
    """The first ``max_tokens`` tokens of ``source`` as a 1-D stream (for perplexity).

    For ``default`` this is the held-out generator stream, disjoint from calibration text; for a
    dataset, pass a split the calibration does not use (default ``test``).
    """
    texts = iter_texts(
        source, text_field, data_config, data_split, 0, "heldout", what="--ppl-source"
    )
    ids = token_stream(tokenizer, texts, max_tokens)
    if ids.numel() < 2:
        raise ShearsError(f"held-out text {source!r} gives fewer than 2 tokens")
    return ids
