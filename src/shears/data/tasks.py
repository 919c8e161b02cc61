"""Instruction / evaluation examples from Alpaca-style JSON(L), hub datasets and reasoning-gym.

Every loader returns a list of plain dicts with the keys ``instruction``, ``input``, ``output``
(the target text for training, may be empty for test-only data) and ``answer`` (the label used for
scoring, may be empty), plus ``template`` where the source has one (for splitting).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from shears.errors import ShearsError
from shears.inputs import parse_json, read_text_file

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def _example(
    instruction: str, input: str = "", output: str = "", answer: str = "", **extra: Any
) -> dict:  # noqa: A002
    return {"instruction": instruction, "input": input, "output": output, "answer": answer, **extra}


def read_json_rows(path: str | Path) -> list[dict]:
    """The raw records of a JSON list (or ``{"data": [...]}``) or a JSONL file.

    Raises a ShearsError for a missing file, invalid JSON, no records, or a record that is not an
    object.
    """
    p = Path(path)
    where = f"data file {str(p)!r}"
    if not p.is_file():
        raise ShearsError(f"{where} does not exist")
    text = read_text_file(p, "data file")
    if p.suffix == ".jsonl":
        rows = [
            parse_json(line, f"{where} line {i + 1}")
            for i, line in enumerate(text.splitlines())
            if line.strip()
        ]
    else:
        rows = parse_json(text, where)
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list) or not rows:
        raise ShearsError(f"{where} holds no records (expected a non-empty JSON list)")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise ShearsError(f"{where}: record {i} is not an object")
    return rows


def load_json_records(path: str | Path, require: tuple[str, ...] = ("instruction",)) -> list[dict]:
    """Read a JSON list or a JSONL file of records (LLM-Adapters / Alpaca format).

    Fields: ``instruction`` (required), ``input``, ``output``, ``answer``. Raises a ShearsError
    naming the first record that misses a required field.
    """
    return [_normalise(r, i, require, str(path)) for i, r in enumerate(read_json_rows(path))]


def _normalise(r: dict, i: int, require: tuple[str, ...], where: str) -> dict:
    for key in require:
        if key not in r or r[key] in (None, ""):
            raise ShearsError(
                f"{where}: record {i} has no {key!r} field; records need {', '.join(require)} "
                f"(found: {', '.join(sorted(r))})"
            )
    extra = {k: v for k, v in r.items() if k not in ("instruction", "input", "output", "answer")}
    return _example(
        str(r.get("instruction", "")),
        str(r.get("input", "") or ""),
        str(r.get("output", "") or ""),
        str(r.get("answer", "") or ""),
        **extra,
    )


def load_hf_records(
    name: str,
    config: str | None = None,
    split: str = "train",
    fields: dict[str, str] | None = None,
    require: tuple[str, ...] = ("instruction",),
) -> list[dict]:
    """Load a ``datasets`` dataset (hub id or local path) and map its columns to our fields.

    ``fields`` maps our keys to column names, e.g. ``{"instruction": "question", "output": "answer"}``.
    """
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many types
        raise ShearsError(
            f"could not load dataset {name!r} (config {config!r}, split {split!r}): {exc}"
        ) from exc
    fields = fields or {}
    rows = []
    for i, row in enumerate(ds):
        mapped = {
            k: row.get(fields.get(k, k), "") for k in ("instruction", "input", "output", "answer")
        }
        rows.append(_normalise(mapped, i, require, name))
    return rows


# ---------------------------------------------------------------------------- reasoning-gym


# Training target of reasoning-gym items without a worked solution: f"{ANSWER_PREFIX} {answer}."
ANSWER_PREFIX = "The answer is"


def _gsm_answer_text(entry: dict) -> str:
    cot = entry.get("metadata", {}).get("answer_cot")
    if cot:
        return cot.strip()
    return f"{ANSWER_PREFIX} {entry['answer']}."


def parse_generator(spec: str) -> tuple[str, dict[str, Any]]:
    """``chain_sum?max_terms=3&max_digits=2`` -> ``("chain_sum", {"max_terms": 3, "max_digits": 2})``.

    Values are parsed as YAML scalars/lists (``operators=[+,-]``); they are passed to the
    generator's config, so a misspelt key is reported by reasoning-gym.
    """
    import yaml

    name, _, query = spec.partition("?")
    kwargs: dict[str, Any] = {}
    for part in filter(None, query.split("&")):
        key, eq, raw = part.partition("=")
        if not eq or not key:
            raise ShearsError(f"generator option {part!r} in {spec!r} must look like key=value")
        kwargs[key] = yaml.safe_load(raw)
    return name, kwargs


def reasoning_gym_templates(name: str, seed: int) -> int | None:
    """Number of templates of a reasoning-gym generator (None when it has no template notion)."""
    import reasoning_gym

    name, kwargs = parse_generator(name)
    ds = reasoning_gym.create_dataset(name, size=1, seed=seed, **kwargs)
    gens = getattr(ds, "generators", None)
    return len(gens) if gens else None


def split_templates(
    templates: list[int], seed: int, fractions: tuple[float, float, float]
) -> dict[str, set[int]]:
    """Shuffle template ids with ``seed`` and cut them into disjoint train/validation/test sets."""
    ids = sorted(templates)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_val = max(1, round(fractions[1] * n))
    n_test = max(1, round(fractions[2] * n))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ShearsError(
            f"{n} templates cannot be split into train/validation/test with fractions {fractions}"
        )
    return {
        "train": set(ids[:n_train]),
        "validation": set(ids[n_train : n_train + n_val]),
        "test": set(ids[n_train + n_val :]),
    }


def load_reasoning_gym(
    name: str,
    split: str,
    size: int,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    split_seed: int = 1234,
) -> list[dict]:
    """``size`` problems of reasoning-gym generator ``name`` for ``split``.

    Generators with templates (``gsm_symbolic``: 100 templates, chosen per item by
    ``ds.task_indices[idx]``; note ``metadata['source_index']`` is the item index, not the template)
    are split **by template** with ``split_seed``, so test templates never appear in training.
    Other generators are split by a hash of the question text (each split owns a disjoint slice
    of hash space), so no question appears in two splits. Questions are unique within a split. The output text is the
    worked solution when the generator has one (``answer_cot``), else ``The answer is X.``
    """
    import reasoning_gym

    if split not in SPLITS:
        raise ShearsError(f"split {split!r} is not known; allowed: {', '.join(SPLITS)}")
    if size < 1:
        raise ShearsError(f"size must be >= 1, got {size}")
    spec = name
    name, kwargs = parse_generator(spec)
    try:
        probe = reasoning_gym.create_dataset(name, size=1, seed=seed, **kwargs)
    except Exception as exc:
        raise ShearsError(f"reasoning-gym generator {spec!r} cannot be created: {exc}") from exc
    offset = {"train": 0, "validation": 1, "test": 2}[split]
    templated = bool(getattr(probe, "generators", None)) and hasattr(probe, "task_indices")
    keep = (
        split_templates(list(probe.generators), split_seed, fractions)[split] if templated else None
    )
    lo = sum(fractions[:offset]) / sum(fractions)
    hi = sum(fractions[: offset + 1]) / sum(fractions)
    out: list[dict] = []
    seen: set[str] = set()
    chunk = max(4 * size, 64)
    stale = 0  # rounds that added nothing new: the generator is exhausted
    for round_ in range(10_000):
        if stale >= 3:
            break
        before = len(out)
        ds = reasoning_gym.create_dataset(
            # item idx is drawn from Random(seed + idx): consecutive rounds must not overlap
            name,
            size=chunk,
            seed=seed * 10_000_019 + offset * 1_000_003 + round_ * chunk,
            **kwargs,
        )
        for idx in range(len(ds)):
            if templated:
                tpl = int(ds.task_indices[idx])
                if tpl not in keep:
                    continue
                entry = ds[idx]
            else:
                # no templates: the split owns a fixed slice of question-hash space, so the same
                # question can never land in two splits (small generators repeat questions)
                tpl = None
                entry = ds[idx]
                if not lo <= _hash_unit(entry["question"], split_seed) < hi:
                    continue
            if entry["question"] in seen:
                continue
            seen.add(entry["question"])
            out.append(_gym_example(entry, tpl))
            if len(out) == size:
                return out
        stale = stale + 1 if len(out) == before else 0
    raise ShearsError(
        f"reasoning-gym generator {spec!r} yields only {len(out)} distinct {split} problems; "
        f"ask for fewer than {size} or widen its options"
    )


def _hash_unit(text: str, salt: int) -> float:
    """A stable hash of ``text`` mapped to [0, 1)."""
    import hashlib

    digest = hashlib.sha256(f"{salt}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _gym_example(entry: dict, template: int | None) -> dict:
    return _example(
        entry["question"], "", _gsm_answer_text(entry), str(entry["answer"]), template=template
    )
