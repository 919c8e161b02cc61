"""Which stages of a run are up to date: a build system's view of ``shears run``.

Every stage's settings (its validated config, less the flags that do not change its output) and the
digests of the stages it reads from give it a digest. ``stages.json`` records, per stage, the
digest it was started with and whether it finished. A stage is reused when it finished with the
same digest and its output is still there; it resumes when it was started with the same digest
and did not finish; otherwise it runs again and replaces its earlier output (atomically), and so
does every stage after it that reads from it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from shears.config import added_defaults, original_names, to_dict
from shears.utils import atomic_write_json

# settings that change how a stage runs, never what it writes (streamed pruning is bit-identical)
NEUTRAL_KEYS = {
    "overwrite",
    "resume",
    "progress",
    "num_workers",
    "save_steps",
    "save_total_limit",
    "offload",
    "offload_dir",
}


def stage_digest(cfg: Any, upstream: list[str]) -> str:
    """Digest of a stage config (dataclass) and the digests of the stages it reads from. A renamed
    setting counts under its original name, and a setting added later at its default not at all,
    so that neither re-runs finished stages."""
    name, added = original_names(type(cfg)), added_defaults(type(cfg))
    data = {
        name.get(k, k): v
        for k, v in to_dict(cfg).items()
        if k not in NEUTRAL_KEYS and not (k in added and v == added[k])
    }
    text = json.dumps({"settings": data, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class Ledger:
    """A ledger file (``stages.json`` of a run folder): ``{step: {"digest": str, "done": bool}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = {}  # unreadable: every stage counts as changed and runs again
        self.stages: dict[str, dict] = data if isinstance(data, dict) else {}

    def status(self, stage: str, digest: str, output_complete: bool) -> str:
        """``reuse`` | ``resume`` | ``rerun`` (replace an earlier output) | ``new``."""
        rec = self.stages.get(stage)
        if not isinstance(rec, dict) or rec.get("digest") != digest:
            return "rerun" if rec is not None or output_complete else "new"
        if rec.get("done") and output_complete:
            return "reuse"
        return "resume"

    def mark(self, stage: str, digest: str, done: bool) -> None:
        self.stages[stage] = {"digest": digest, "done": done}
        atomic_write_json(self.path, self.stages)
