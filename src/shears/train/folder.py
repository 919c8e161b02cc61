"""The training output folder, over :mod:`shears.outputs`: its state (fresh, resume, replace,
done), its checkpoints, the check that a resumed run keeps its settings, and the cleanup after a
failed run. Until training ends the folder holds only checkpoints (``checkpoint-N``) and the
config; the finished output replaces it in one rename (:func:`shears.train.run.train_nls`).
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

from shears.adapters.config import split_sections
from shears.artifacts import (
    RESOLVED,
    RESOLVED_KEYS,
    TRAIN_CONFIG,
    TRAIN_RESULTS,
    read_train_config,
    train_config_record,
)
from shears.config import added_defaults, same_spec
from shears.errors import ShearsError
from shears.outputs import check_output, remove_own, temp_sibling
from shears.train.config import RESUME_FREE_KEYS, TrainConfig
from shears.train.trainer import checkpoint_problem

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
OWNED = (TRAIN_CONFIG, "checkpoint-*", "runs")  # what training writes in place
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: str | Path) -> int | None:
    """The optimizer step of a ``checkpoint-N`` folder (its name), or ``None`` if not one."""
    m = _CKPT_RE.match(Path(path).name)
    return int(m.group(1)) if m else None


def last_checkpoint(out: Path, *, warn: bool = False, drop_broken: bool = False) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``out``, or ``None``.

    A checkpoint counts when its trainer state (written last) exists and every file passes
    :func:`checkpoint_problem` (a kill or a full disk can cut a file short); newer broken ones
    are skipped, with a WARNING when ``warn``, and deleted when ``drop_broken`` (a resumed run
    writes them again; stale files must not mix with the new ones).
    """
    if not out.is_dir():
        return None
    found = sorted(
        ((n, d) for d in out.iterdir() if (n := checkpoint_step(d)) is not None and d.is_dir()),
        reverse=True,
    )
    for _, d in found:
        problem = checkpoint_problem(d, STATE_FILE)
        if problem is None:
            return d
        if warn:
            logger.warning(
                "skipping checkpoint %s: %s; %s", d, problem,
                "deleting it and resuming from an earlier one" if drop_broken
                else "resuming from an earlier one",
            )  # fmt: skip
        if drop_broken:
            shutil.rmtree(d, ignore_errors=True)
    return None


def _check_resume_config(out: Path, cfg: TrainConfig) -> None:
    """A resumed run must train with the same settings, or it would not end where the first did.

    Paths compare resolved (``./m`` and ``/abs/m`` are the same model); the output folder is
    the one being resumed, whatever it is called now.
    """
    f, old = out / TRAIN_CONFIG, read_train_config(out)
    if old is None:
        return
    old = split_sections(old, warn=False)  # written before the adapter / space split
    new = train_config_record(cfg)
    old_paths, new_paths = old.pop(RESOLVED, None), new.pop(RESOLVED)
    added = added_defaults(TrainConfig)  # settings recorded runs may predate
    for key in sorted(set(old) | set(new)):
        if key in RESUME_FREE_KEYS or key == "output_dir":
            continue
        if key in RESOLVED_KEYS:
            if isinstance(old_paths, dict) and key in old_paths:
                same = old_paths[key] == new_paths[key]
            else:  # written before paths were recorded resolved
                same = same_spec(old.get(key), new.get(key))
            if not same:
                was = old_paths.get(key) if isinstance(old_paths, dict) else old.get(key)
                raise ShearsError(
                    f"--resume with a different {key}: it was {was!r} in {str(f)!r}, now "
                    f"{new_paths[key]!r}; use the same {key} or --overwrite to start over"
                )
            continue
        if (was := old.get(key, added.get(key))) != new.get(key):
            raise ShearsError(
                f"--resume with a different setting: {key} was {was!r} in {str(f)!r}, now "
                f"{new.get(key)!r}; use the same settings or --overwrite to start over"
            )


def train_inputs(cfg: TrainConfig) -> list[str]:
    """What ``shears train`` reads: the output folder must not overlap any of it."""
    return [cfg.model, cfg.data]


def output_state(cfg: TrainConfig) -> str:
    """``done`` (finished and ``resume``), ``resume``, ``replace`` (``--overwrite`` of an earlier
    output: the new one is trained beside it and swapped in at the end) or ``fresh``; raises a
    ShearsError for a folder that is not ours to write, or occupied without a flag."""
    out = check_output(cfg.output_dir, "train", resume=True, inputs=train_inputs(cfg))
    if out.is_dir() and not last_checkpoint(out) and not (out / TRAIN_RESULTS).is_file():
        remove_own(out, "train")  # a failed attempt that saved nothing of value
    if not out.is_dir() or not any(out.iterdir()):
        return "fresh"
    if cfg.overwrite:
        return "replace"
    if not cfg.resume:
        hint = "--resume to continue it or " if last_checkpoint(out) else ""
        raise ShearsError(
            f"output folder {cfg.output_dir!r} already exists (a `shears train` output); pass "
            f"{hint}--overwrite to replace it"
        )
    _check_resume_config(out, cfg)
    return "done" if (out / TRAIN_RESULTS).is_file() else "resume"


def work_folder(out: Path, state: str) -> Path:
    """Where checkpoints go: the output folder, or beside it when replacing an earlier output."""
    return temp_sibling(out, "train") if state == "replace" else out


def drop_failed_work(out: Path, work: Path) -> None:
    """After a failed training: drop a replacement's work folder (the earlier output stays), or
    a new output folder that holds no checkpoint yet (so a rerun needs no --overwrite)."""
    if work != out:
        shutil.rmtree(work, ignore_errors=True)
    elif not last_checkpoint(out):
        remove_own(out, "train")
