"""The instructions ``shears generate`` answers: ``--prompt`` texts or a ``--prompts-file``
(``.txt``: one per line; ``.jsonl``: one object per line), as ``{"instruction", "input"}``
examples that :func:`shears.evaluate.generate.build_prompts` formats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shears.errors import ShearsError
from shears.inputs import parse_json, read_text_file

FLAG = "--prompts-file"
SUFFIXES = (".txt", ".jsonl")
TEXT_KEYS = ("instruction", "prompt", "text")  # the first one present is the instruction


def _from_record(rec: Any, where: str) -> dict[str, str]:
    """``{"instruction", "input"}`` of one JSONL record."""
    if not isinstance(rec, dict):
        raise ShearsError(f'{where} is not an object; give {{"instruction": ...}}')
    key = next((k for k in TEXT_KEYS if k in rec), None)
    if key is None:
        raise ShearsError(f"{where} has none of the fields {', '.join(TEXT_KEYS)}")
    text, extra = rec[key], rec.get("input", "") if key == "instruction" else ""
    if not isinstance(text, str) or not text.strip():
        raise ShearsError(f"{where}: {key!r} must be a non-empty string, got {text!r}")
    if not isinstance(extra, str):
        raise ShearsError(f"{where}: 'input' must be a string, got {extra!r}")
    return {"instruction": text, "input": extra}


def read_prompts_file(path: str) -> list[dict[str, str]]:
    """The examples of a ``.txt`` or ``.jsonl`` prompts file (blank lines skipped); a one-line
    ShearsError for a missing, binary or malformed file, or one without prompts."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise ShearsError(
            f"{FLAG} {path!r} must end in .txt (one prompt per line) or .jsonl (one object "
            "per line)"
        )
    lines = [(i, ln) for i, ln in enumerate(read_text_file(p, FLAG).splitlines(), 1) if ln.strip()]
    if not lines:
        raise ShearsError(f"{FLAG} {path!r} holds no prompts")
    if p.suffix == ".txt":
        return [{"instruction": ln.strip(), "input": ""} for _, ln in lines]
    where = f"{FLAG} {path!r} line"
    return [_from_record(parse_json(ln, f"{where} {i}"), f"{where} {i}") for i, ln in lines]


def prompt_examples(prompts: list[str], prompts_file: str | None) -> list[dict[str, str]]:
    """The examples to answer: the ``--prompt`` texts, else those of ``prompts_file``."""
    if prompts:
        return [{"instruction": p, "input": ""} for p in prompts]
    return read_prompts_file(prompts_file)
