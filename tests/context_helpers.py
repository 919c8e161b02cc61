"""Helpers for the context-length tests: tiny models with a short context, saved as HF folders,
and the CLI with its one-line errors captured."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from conftest import tiny_model

POSITIONS = 64
LONG_QUESTION = "Below is an instruction that describes a task. " * 12  # > 64 tokens


def short_folder(path: Path, tokenizer, arch: str = "gpt2", positions: int = POSITIONS) -> str:
    """A tiny random ``arch`` model of ``positions`` positions with ``tokenizer``, saved."""
    model = tiny_model(arch, tokenizer=tokenizer, max_positions=positions)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def write_json(path: Path, rows: list[dict]) -> str:
    path.write_text(json.dumps(rows))
    return str(path)


def cli(argv: list[str]) -> int:
    """``shears.cli.main`` (its log handler writes to the current, captured, stderr)."""
    from shears.cli import main

    return main(argv)


@contextlib.contextmanager
def warnings_of(name: str) -> Iterator[list[str]]:
    """Collect the WARNING messages of logger ``name`` (the ``shears`` logger does not propagate
    to the root logger, where caplog listens, once the CLI has set it up)."""
    got: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                got.append(record.getMessage())

    log = logging.getLogger(name)
    handler = _Keep()
    log.addHandler(handler)
    try:
        yield got
    finally:
        log.removeHandler(handler)


def error_lines(err: str) -> list[str]:
    """The ERROR lines of captured stderr."""
    return [line for line in err.splitlines() if " ERROR " in line]
