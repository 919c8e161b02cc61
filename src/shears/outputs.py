"""Output folders: the one owner of where a command writes, what it may replace, and cleanup.

The contract (a command never deletes what it did not write):

- Every folder a command writes holds a marker, ``.shears-output.json``, naming the command
  (``stage``) and the top-level entries it wrote (names or glob patterns).
- ``--overwrite`` replaces only a folder whose marker names the same command. Folders written
  before markers existed are recognised by the command's own results/config file.
- Never ``/``, the home folder, the current folder or one of its parents; never a folder that is,
  holds or lies inside one of the command's inputs; never a non-empty folder without the marker,
  and never a marked folder that also holds files the command did not write.
- Replacement is atomic: the new output is written beside the old one
  (``.<name>.tmp-<pid>-*``), swapped in by rename, then the old one is deleted
  (``.<name>.old-<pid>-*``). Such hidden siblings whose process is gone are removed on the next
  run (:func:`clean_stale`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from shears.artifacts import STAGE_FILES
from shears.config import local_spec_path
from shears.errors import ShearsError

logger = logging.getLogger(__name__)

MARKER = ".shears-output.json"

_SIBLING_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)(-.*)?$")


# ---------------------------------------------------------------------------- paths


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute (``~`` expanded, symlinks and ``..`` resolved)."""
    return Path(path).expanduser().resolve()


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _owner_pid() -> int:
    """The process that owns a temp folder: the launcher (shared by every rank) when distributed."""
    return os.getppid() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else os.getpid()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------- markers


def read_marker(folder: Path) -> dict | None:
    """The marker of ``folder`` (``None`` if absent or unreadable)."""
    f = folder / MARKER
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("stage"), str) else None


def write_marker(folder: Path, stage: str, owned: Iterable[str]) -> None:
    """Mark ``folder`` as written by ``stage``, owning the entries ``owned`` (names or globs)."""
    from shears import __version__
    from shears.utils import atomic_write_json

    names = sorted({*owned, MARKER})
    atomic_write_json(folder / MARKER, {"stage": stage, "owned": names, "shears": __version__})


def owner(folder: Path) -> tuple[str | None, list[str] | None]:
    """``(stage, owned patterns)`` of a folder; ``(stage, None)`` for an unmarked folder of an
    older version (recognised by its files: every entry counts as its own); ``(None, None)``."""
    marker = read_marker(folder)
    if marker is not None:
        owned = marker.get("owned")
        return marker["stage"], [str(p) for p in owned] if isinstance(owned, list) else None
    for stage, files in STAGE_FILES.items():  # written before markers existed
        if any((folder / f).is_file() for f in files):
            return stage, None
    return None, None


def foreign_entries(folder: Path, owned: list[str] | None) -> list[str]:
    """Entries of ``folder`` that the marker's ``owned`` patterns do not cover."""
    if owned is None:
        return []
    return sorted(
        e.name
        for e in folder.iterdir()
        if not any(fnmatch.fnmatchcase(e.name, pat) for pat in owned)
        and not e.name.startswith(f".{MARKER}")  # a marker being rewritten
    )


def _visible_entries(folder: Path) -> list[Path]:
    """Entries of ``folder`` except the marker and our temp leftovers (a folder holding only
    those counts as empty: a failed attempt that wrote nothing of value)."""
    return [e for e in folder.iterdir() if e.name != MARKER and not _SIBLING_RE.match(e.name)]


# ---------------------------------------------------------------------------- checks


def check_output(
    path: str | os.PathLike,
    stage: str,
    *,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    flag: str = "--output-dir",
) -> Path:
    """Check that ``stage`` may write ``path`` before any work; return it absolute.

    Raises a one-line :class:`ShearsError` for a file, a protected folder, an overlap with an
    input, a non-empty folder that ``stage`` did not write, and an existing output of ``stage``
    without ``overwrite`` / ``resume``. Removes what killed runs left beside it (:func:`clean_stale`).
    """
    given = str(path)
    if not given.strip():
        raise ShearsError(f"{flag} is empty; name a folder")
    out = absolute(path)
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise ShearsError(f"{flag} {given!r} lies under {str(parent)!r}, which is a file")
    if out.exists() and not out.is_dir():
        raise ShearsError(f"{flag} {given!r} is a file; name a folder")
    cwd, home = absolute(Path.cwd()), absolute(Path.home())
    protected = {Path(out.anchor): "the file-system root", home: "your home folder"}
    if out in protected:
        raise ShearsError(f"{flag} {given!r} is {protected[out]}; name a new sub-folder")
    if _inside(cwd, out):
        raise ShearsError(
            f"{flag} {given!r} is the current folder or one of its parents; name a new sub-folder"
        )
    for spec in inputs:
        found = local_spec_path(None if spec is None else str(spec))
        if found is None:  # a hub id, a named default or a gym: source
            continue
        inp = Path(found)
        if _inside(inp, out):
            raise ShearsError(
                f"{flag} {given!r} holds the input {str(spec)!r}; name another output folder"
            )
        if _inside(out, inp):
            raise ShearsError(
                f"{flag} {given!r} lies inside the input {str(spec)!r}; name another output folder"
            )
    if out.is_dir() and _visible_entries(out):
        check_replaceable(out, stage, given, flag)
        if not (overwrite or resume):
            raise ShearsError(
                f"{flag} {given!r} already exists (a `shears {stage}` output); pass --overwrite "
                "to replace it or choose another folder"
            )
    clean_stale(out)
    return out


def check_replaceable(
    out: Path, stage: str, given: str | None = None, flag: str = "folder"
) -> None:
    """Raise unless ``out`` (non-empty) holds only what ``stage`` wrote there."""
    given = given or str(out)
    found, owned = owner(out)
    if found is None:
        raise ShearsError(
            f"{flag} {given!r} is not empty and was not written by shears; shears never replaces "
            "such a folder: name a new or empty folder"
        )
    if found != stage:
        raise ShearsError(
            f"{flag} {given!r} holds the output of `shears {found}`, not of `shears {stage}`; "
            "name another folder"
        )
    foreign = foreign_entries(out, owned)
    if foreign:
        raise ShearsError(
            f"{flag} {given!r} holds files that `shears {stage}` did not write "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); move them away "
            "or name another folder"
        )


# ---------------------------------------------------------------------------- writing


def clean_stale(out: Path) -> None:
    """Remove hidden ``.<name>.tmp-<pid>-*`` / ``.<name>.old-<pid>-*`` siblings of ``out`` whose
    process is gone (left by a kill): they were written by shears and are never complete."""
    parent = out.parent
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        m = _SIBLING_RE.match(entry.name)
        if not m or m.group("name") != out.name or _alive(int(m.group("pid"))):
            continue
        logger.info("removing %s, left by a process that is gone", entry)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def temp_sibling(out: Path, tag: str = "") -> Path:
    """A new hidden folder beside ``out`` named ``.<name>.tmp-<pid>-<tag|random>``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.tmp-{_owner_pid()}-"
    if tag:
        tmp = out.parent / f"{prefix}{tag}"
        tmp.mkdir(exist_ok=True)
        return tmp
    return Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))


def swap_in(tmp: Path, out: Path, stage: str) -> None:
    """Move the finished ``tmp`` to ``out``: rename the old ``out`` aside, rename ``tmp`` in, then
    delete the old one. Re-checks that the old ``out`` is still ``stage``'s to replace; if it is
    not (someone wrote into it meanwhile), keeps the new output beside it and says where."""
    if out.exists() and (not out.is_dir() or _visible_entries(out)):
        try:
            check_replaceable(out, stage)
        except ShearsError as exc:
            keep = out.with_name(f"{out.name}.new-{os.getpid()}")
            tmp.rename(keep)
            raise ShearsError(f"{exc}; the new output was kept in {str(keep)!r}") from exc
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
        old.rmdir()
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    stage: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is marked and replaces ``path`` at once.

    A failure (or a kill) leaves ``path`` as it was; the temp folder is removed on failure, and
    after a kill by the next run (:func:`clean_stale`).
    """
    out = check_output(path, stage, overwrite=overwrite, inputs=inputs)
    tmp = temp_sibling(out)
    try:
        yield tmp
        write_marker(tmp, stage, [e.name for e in tmp.iterdir()])
        swap_in(tmp, out, stage)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def claim(folder: Path, stage: str, owned: Iterable[str]) -> None:
    """Create ``folder`` (if needed) and mark it as ``stage``'s, owning ``owned`` patterns; for a
    command that writes in place (search log, checkpoints, eval results, run folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = read_marker(folder)
    known = marker.get("owned", []) if marker and marker.get("stage") == stage else []
    write_marker(folder, stage, [*known, *owned])


def remove_own(folder: Path, stage: str) -> None:
    """Delete ``folder`` if it holds only what ``stage`` wrote (a failed attempt's leftovers)."""
    if not folder.is_dir():
        return
    found, owned = owner(folder)
    if found == stage and not foreign_entries(folder, owned):
        shutil.rmtree(folder, ignore_errors=True)
