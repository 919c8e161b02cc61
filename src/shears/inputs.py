"""Read what the user gives (text and JSON files, name patterns) with one-line errors.

Every failure is a :class:`~shears.errors.ShearsError` that names the flag or file and says what
is allowed: a missing or unreadable file, binary or non-UTF-8 content, invalid JSON, an invalid
regular expression.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from shears.errors import ShearsError

SNIFF_BYTES = 1 << 16  # how much of a large text file is checked before any expensive work


def _where(path: str | Path, what: str) -> str:
    return f"{what} {str(path)!r}"


def _not_text(where: str, raw: bytes, pos: int, reason: str) -> ShearsError:
    return ShearsError(
        f"{where} is not UTF-8 text ({reason} at byte {pos}: {raw[pos : pos + 4]!r}...): "
        "binary data or another encoding; give a UTF-8 text file"
    )


def check_text_bytes(raw: bytes, where: str, final: bool = True, offset: int = 0) -> str:
    """Decode ``raw`` as UTF-8 text; a ShearsError naming ``where`` for NUL bytes (binary data)
    or invalid UTF-8. ``final=False``: ``raw`` is a prefix, a cut multi-byte character at its end
    is fine. ``offset``: the position of ``raw`` in the file (for the message)."""
    nul = raw.find(b"\x00")
    try:  # up to a NUL byte first: report whichever problem comes first
        text = codecs.getincrementaldecoder("utf-8")().decode(
            raw if nul < 0 else raw[:nul], final=final and nul < 0
        )
    except UnicodeDecodeError as exc:
        raise _not_text(where, raw, exc.start, "invalid UTF-8") from exc
    if nul >= 0:
        raise _not_text(where, raw, nul, "a NUL byte")
    return text


def _open_error(path: Path, where: str, exc: OSError) -> ShearsError:
    if isinstance(exc, FileNotFoundError):
        return ShearsError(f"{where} does not exist")
    if isinstance(exc, IsADirectoryError):
        return ShearsError(f"{where} is a folder, not a file")
    return ShearsError(f"{where} cannot be read: {exc.strerror or exc}")


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped). ``what`` names the flag or the kind of
    file in errors, e.g. ``"--data file"``."""
    p = Path(path)
    where = _where(p, what)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise _open_error(p, where, exc) from exc
    return check_text_bytes(raw, where).removeprefix("\ufeff")


def check_text_file(path: str | Path, what: str, nbytes: int = SNIFF_BYTES) -> None:
    """Cheap check that ``path`` starts as UTF-8 text (its first ``nbytes``); for large files that
    are read lazily later (see :func:`iter_text_lines`)."""
    p = Path(path)
    where = _where(p, what)
    try:
        with p.open("rb") as fh:
            head = fh.read(nbytes)
    except OSError as exc:
        raise _open_error(p, where, exc) from exc
    check_text_bytes(head, where, final=len(head) < nbytes)


def iter_text_lines(path: str | Path, what: str) -> Iterator[str]:
    """The lines of a UTF-8 text file, lazily (bounded memory); a ShearsError at the first binary
    or non-UTF-8 line."""
    p = Path(path)
    where = _where(p, what)
    decoder = codecs.getincrementaldecoder("utf-8")()
    pos = 0
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise _open_error(p, where, exc) from exc
    with fh:
        for raw in fh:
            nul = raw.find(b"\x00")
            if nul >= 0:
                raise _not_text(where, raw, nul, f"a NUL byte (file offset {pos + nul})")
            try:
                text = decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise _not_text(
                    where, raw, exc.start, f"invalid UTF-8 (file offset {pos + exc.start})"
                ) from exc
            if pos == 0:
                text = text.removeprefix("\ufeff")
            pos += len(raw)
            yield text
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise ShearsError(f"{where} ends inside a UTF-8 character: give a UTF-8 file") from exc
        if tail:
            yield tail


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` with a one-line ShearsError naming ``where`` on invalid JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ShearsError(f"{where} is not valid JSON: {exc}") from exc


def read_json_file(path: str | Path, what: str, expect: type | None = None) -> Any:
    """The parsed JSON of ``path``; ``expect`` (e.g. ``dict``) also checks the top-level type.
    ``what`` names the flag or kind of file, e.g. ``"--start file"``, ``"adapter metadata"``."""
    where = _where(path, what)
    data = parse_json(read_text_file(path, what), where)
    if expect is not None and not isinstance(data, expect):
        kind = {dict: "an object {...}", list: "a list [...]"}.get(expect, expect.__name__)
        raise ShearsError(f"{where} must hold {kind} at the top level, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------- patterns


@functools.lru_cache(maxsize=256)
def _compile(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def compile_regex(regex: str, what: str) -> re.Pattern[str]:
    """``re.compile(regex)`` (cached); a bad regular expression is a one-line ShearsError that
    starts with ``what`` (which names the flag and the value, e.g. ``"--targets 're:['"``)."""
    try:
        return _compile(regex)
    except re.error as exc:
        raise ShearsError(
            f"{what} is not a valid regular expression: {exc} (Python re syntax; escape literal "
            "characters such as [ ( . with \\)"
        ) from exc


def check_name_patterns(patterns: Iterable[str], what: str) -> None:
    """Every ``re:<regex>`` in ``patterns`` must compile (suffix patterns need no check);
    ``what`` names the flag or config key, e.g. ``"--targets"``."""
    for p in patterns:
        if isinstance(p, str) and p.startswith("re:"):
            compile_regex(p[3:], f"{what} {p!r}")
