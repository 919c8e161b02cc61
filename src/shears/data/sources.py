"""Reading a :class:`~shears.data.spec.DataSpec`: the one place that opens data files, `datasets`
and reasoning-gym generators.

- :func:`load_examples`: the records of a gym / JSON / `datasets` source (training, search
  validation and evaluation tasks all read through it);
- :func:`load_instructions`: the same as instruction records, checked for required fields;
- :func:`read_texts`: the documents of a text source, lazily (calibration and perplexity text):
  texts are read until the caller has enough tokens, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shears.data.spec import DEFAULT_TEXT, DataSpec
from shears.data.tasks import instruction_record, load_reasoning_gym
from shears.errors import ShearsError
from shears.inputs import iter_text_lines, parse_json, read_text_file

_TEXT_CHUNK_CHARS = 8192

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


# ---------------------------------------------------------------------------- records


def load_examples(spec: DataSpec, split: str | None = None, n: int | None = None) -> list[dict]:
    """At most ``n`` records of ``split`` (default ``spec.split``) of a gym, JSON or `datasets`
    source; a record keeps every field of the source, and ``spec.fields`` copies fields to our
    names. gym: ``spec.size`` (else ``n``) problems of the split. Text sources: :func:`read_texts`.
    """
    split = split or spec.split
    if spec.source == "gym":
        if not (spec.size or n):
            raise ShearsError(f"reasoning-gym data {spec.path!r} needs a size")
        rows = load_reasoning_gym(spec.path, split, spec.size or n, seed=spec.seed)
    elif spec.source == "json":
        rows = [map_fields(r, spec.fields) for r in read_json_rows(spec.path)]
    elif spec.source == "hf":
        ds = open_dataset(spec.path, spec.config, split)
        rows = [map_fields(dict(r), spec.fields) for r in ds]
    else:
        raise ShearsError(f"{spec.path!r} is a text source, which holds no records")
    return rows if n is None else rows[:n]


def load_instructions(
    spec: DataSpec,
    split: str | None = None,
    n: int | None = None,
    require: tuple[str, ...] = ("instruction",),
) -> list[dict]:
    """At most ``n`` records of ``spec`` as instruction records (``instruction``, ``input``,
    ``output``, ``answer`` as text, other fields kept); every record is checked for the
    ``require`` fields (a ShearsError names the first one without). Generated problems are
    instruction records already."""
    rows = load_examples(spec, split)
    if spec.source != "gym":
        where = str(Path(spec.path)) if spec.source == "json" else spec.path
        rows = [instruction_record(r, i, require, where) for i, r in enumerate(rows)]
    return rows if n is None else rows[:n]


def map_fields(row: dict, fields: dict[str, str]) -> dict:
    """``row`` with our field ``k`` set to the source's field ``fields[k]`` where that exists."""
    out = dict(row)
    for ours, theirs in fields.items():
        if theirs in row:
            out[ours] = row[theirs]
    return out


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


def open_dataset(path: str, config: str | None, split: str) -> Any:
    """The ``split`` of a `datasets` dataset: a folder saved with ``save_to_disk``
    (``load_from_disk``), else ``load_dataset`` (a hub id or a folder of data files)."""
    import datasets

    p = Path(path).expanduser()
    try:
        if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ShearsError(
                        f"dataset {path!r} has no split {split!r}; has: {', '.join(ds)}"
                    )
                ds = ds[split]
            return ds
        return datasets.load_dataset(str(p) if p.is_dir() else path, config, split=split)
    except ShearsError:
        raise
    except Exception as exc:  # datasets raises many types (offline, missing config, ...)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        which = f"config {config!r}, split {split!r}" if config else f"split {split!r}"
        raise ShearsError(f"could not load dataset {path!r} ({which}): {msg}") from exc


# ---------------------------------------------------------------------------- text


def read_texts(spec: DataSpec, what: str = "--calibration") -> Iterator[str]:
    """The documents of a text source (:meth:`DataSpec.text`), lazily; ``what`` names the flag
    in errors. `datasets` rows are shuffled with ``spec.seed`` (an index permutation, no copy)."""
    path = Path(spec.path).expanduser()
    if spec.source == "text" and spec.path == DEFAULT_TEXT:
        return default_texts(spec.split, spec.seed)
    if spec.source == "text":
        return _text_file_chunks(path, what)
    if spec.source == "json":
        return _json_texts(path, spec.text_field, what)
    if spec.source == "hf":
        return _dataset_texts(spec)
    raise ShearsError(f"{what} {spec.path!r}: reasoning-gym problems are not a text source")


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


def _text_file_chunks(path: Path, what: str) -> Iterator[str]:
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


def _json_texts(path: Path, text_field: str, what: str) -> Iterator[str]:
    """The text of every record (an object's ``text_field``, or a string) of a JSON / JSONL file."""
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


def _dataset_texts(spec: DataSpec) -> Iterator[str]:
    ds = open_dataset(spec.path, spec.config, spec.split)
    if spec.text_field not in ds.column_names:
        raise ShearsError(
            f"dataset {spec.path!r} has no column {spec.text_field!r}; columns: "
            f"{', '.join(ds.column_names)} (pass --text-field)"
        )
    ds = ds.shuffle(seed=spec.seed)
    for row in ds:
        yield str(row[spec.text_field] or "")
