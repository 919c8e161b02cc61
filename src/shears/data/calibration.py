"""Calibration and held-out text: sources, token streams and fixed-length windows.

A *source* is one of:

- ``"default"``: text generated offline from reasoning-gym problem generators (word problems with
  worked solutions, logic puzzles, date/time questions...), no download needed. Two disjoint
  streams exist: ``split="calibration"`` and ``split="heldout"`` (for perplexity).
- a text file (any suffix but .json/.jsonl), read in chunks of lines;
- a ``.json`` (list of records or strings, or ``{"data": [...]}``) / ``.jsonl`` file; the text is
  the record's ``text_field``;
- a ``datasets`` dataset: a hub name (``load_dataset(name, config, split=...)``) or a local folder
  (``load_from_disk`` when saved with ``save_to_disk``, else ``load_dataset(folder)``); the text is
  the column ``text_field``; rows are shuffled with the seed (an index permutation, no copy).

Memory stays bounded: texts are read lazily and tokenised until ``max_tokens`` tokens are held
(by default twice what the windows need), then the stream stops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from shears.errors import ShearsError
from shears.inputs import check_text_file, iter_text_lines, parse_json, read_text_file

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "default"
_TEXT_CHUNK_CHARS = 8192
_JSON_SUFFIXES = (".json", ".jsonl")
_PATH_SUFFIXES = (".txt", ".md", ".text", ".csv", ".json", ".jsonl", ".parquet", ".arrow")

# Generators whose problems read as prose; zebra puzzles etc. are left out (slow or grid-like).
DEFAULT_GENERATORS = (
    "gsm_symbolic",
    "family_relationships",
    "knights_knaves",
    "syllogism",
    "aiw",
    "leg_counting",
    "calendar_arithmetic",
    "time_intervals",
    "course_schedule",
    "basic_arithmetic",
    "sentence_reordering",
    "needle_haystack",
)
_SPLIT_SEED = {"calibration": 1_000, "heldout": 2_000_000}


def source_kind(source: str) -> str:
    """``default``, ``text``, ``json`` or ``dataset`` (no I/O beyond ``Path.exists``)."""
    if source == DEFAULT_SOURCE:
        return "default"
    p = Path(source).expanduser()
    if p.is_file():
        return "json" if p.suffix in _JSON_SUFFIXES else "text"
    if p.is_dir():
        return "dataset"
    if source.startswith((".", "/", "~")) or p.suffix in _PATH_SUFFIXES:
        return "missing"
    return "dataset"


def validate_source(source: str, what: str = "--calibration") -> None:
    """Cheap checks before any model is loaded: file exists, reasoning-gym importable..."""
    kind = source_kind(source)
    if kind == "missing":
        raise ShearsError(
            f"{what} {source!r} does not exist (expected 'default', a text/JSON/JSONL file, "
            "a datasets folder or a datasets name)"
        )
    if kind in ("text", "json"):  # binary or non-UTF-8 content fails here, before any model
        check_text_file(Path(source).expanduser(), what)
    if kind == "default":
        import importlib.util

        if importlib.util.find_spec("reasoning_gym") is None:
            raise ShearsError(
                f"{what} 'default' generates text with reasoning-gym, which is not installed; "
                "pip install 'reasoning-gym==0.1.25' or pass a text file"
            )


# ---------------------------------------------------------------------------- text sources


def default_texts(split: str = "calibration", seed: int = 0) -> Iterator[str]:
    """Endless offline documents, round-robin over :data:`DEFAULT_GENERATORS`.

    ``split`` picks one of two disjoint seed ranges (``calibration``, ``heldout``).
    """
    import reasoning_gym

    if split not in _SPLIT_SEED:
        raise ShearsError(
            f"default text split {split!r} is not known; allowed: calibration, heldout"
        )
    size = 100_000  # generators are lazy: an item is built when indexed
    base = _SPLIT_SEED[split] + seed * 131
    sets = [
        reasoning_gym.create_dataset(name, size=size, seed=base + i)
        for i, name in enumerate(DEFAULT_GENERATORS)
    ]
    for idx in range(size):
        for ds in sets:
            item = ds[idx]
            solution = (item.get("metadata") or {}).get("answer_cot")
            answer = solution if solution else f"The answer is {item['answer']}."
            yield f"{item['question'].strip()}\n\n{answer}"


def _text_file_chunks(path: Path, what: str = "--calibration") -> Iterator[str]:
    """The file in chunks of whole lines of about ``_TEXT_CHUNK_CHARS`` characters; binary or
    non-UTF-8 content is a ShearsError (never silently replaced)."""
    buf: list[str] = []
    size = 0
    for line in iter_text_lines(path, what):
        buf.append(line)
        size += len(line)
        if size >= _TEXT_CHUNK_CHARS:
            yield "".join(buf)
            buf, size = [], 0
    if buf:
        yield "".join(buf)


def _record_text(rec: object, text_field: str, where: str, i: int) -> str:
    if isinstance(rec, str):
        return rec
    if isinstance(rec, dict) and text_field in rec:
        return str(rec[text_field] or "")
    found = ", ".join(sorted(rec)) if isinstance(rec, dict) else type(rec).__name__
    raise ShearsError(
        f"{where}: record {i} has no field {text_field!r} (found: {found}); pass --text-field"
    )


def _json_texts(path: Path, text_field: str, what: str = "--calibration") -> Iterator[str]:
    where = str(path)
    if path.suffix == ".jsonl":
        for i, line in enumerate(iter_text_lines(path, what)):
            if line.strip():
                rec = parse_json(line, f"{what} {where!r} line {i + 1}")
                yield _record_text(rec, text_field, where, i)
        return
    rows = parse_json(read_text_file(path, what), f"{what} {where!r}")
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list):
        raise ShearsError(f"{where} must hold a JSON list of records or strings")
    for i, rec in enumerate(rows):
        yield _record_text(rec, text_field, where, i)


def _dataset_texts(
    source: str, config: str | None, split: str, text_field: str, seed: int
) -> Iterator[str]:
    import datasets

    p = Path(source).expanduser()
    try:
        if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ShearsError(
                        f"dataset {source!r} has no split {split!r}; has: {', '.join(ds)}"
                    )
                ds = ds[split]
        else:
            ds = datasets.load_dataset(str(p) if p.is_dir() else source, config, split=split)
    except ShearsError:
        raise
    except Exception as exc:  # datasets raises many types (offline, missing config, ...)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ShearsError(f"could not load dataset {source!r} (split {split!r}): {msg}") from exc
    if text_field not in ds.column_names:
        raise ShearsError(
            f"dataset {source!r} has no column {text_field!r}; columns: "
            f"{', '.join(ds.column_names)} (pass --text-field)"
        )
    ds = ds.shuffle(seed=seed)
    for row in ds:
        yield str(row[text_field] or "")


def iter_texts(
    source: str,
    text_field: str = "text",
    dataset_config: str | None = None,
    dataset_split: str = "train",
    seed: int = 0,
    default_split: str = "calibration",
    what: str = "--calibration",
) -> Iterator[str]:
    """Documents of ``source`` (see the module docstring), lazily; ``what`` names the flag in
    errors."""
    validate_source(source, what)
    kind = source_kind(source)
    if kind == "default":
        return default_texts(default_split, seed)
    path = Path(source).expanduser()
    if kind == "text":
        return _text_file_chunks(path, what)
    if kind == "json":
        return _json_texts(path, text_field, what)
    return _dataset_texts(source, dataset_config, dataset_split, text_field, seed)


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
    source: str = DEFAULT_SOURCE,
    nsamples: int = 128,
    seqlen: int = 512,
    seed: int = 0,
    text_field: str = "text",
    dataset_config: str | None = None,
    dataset_split: str = "train",
    oversample: float = 2.0,
) -> torch.Tensor:
    """Token windows (nsamples, seqlen) for calibration, read from ``source``.

    At most ``oversample * nsamples * seqlen`` tokens are read; windows are drawn from them.
    """
    texts = iter_texts(source, text_field, dataset_config, dataset_split, seed, "calibration")
    ids = token_stream(
        tokenizer, texts, max(int(oversample * nsamples * seqlen), nsamples * seqlen)
    )
    logger.info("calibration: %d tokens read from %s", ids.numel(), source)
    return sample_windows(ids, nsamples, seqlen, seed)


def heldout_ids(
    tokenizer: object,
    source: str = DEFAULT_SOURCE,
    max_tokens: int = 16384,
    text_field: str = "text",
    dataset_config: str | None = None,
    dataset_split: str = "test",
) -> torch.Tensor:
    """The first ``max_tokens`` tokens of ``source`` as a 1-D stream (for perplexity).

    For ``default`` this is the held-out generator stream, disjoint from calibration text; for a
    dataset, pass a split the calibration does not use (default ``test``).
    """
    texts = iter_texts(
        source, text_field, dataset_config, dataset_split, 0, "heldout", what="--ppl-source"
    )
    ids = token_stream(tokenizer, texts, max_tokens)
    if ids.numel() < 2:
        raise ShearsError(f"held-out text {source!r} gives fewer than 2 tokens")
    return ids
