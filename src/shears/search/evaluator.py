"""The cached evaluator every search algorithm talks to.

``config -> score`` through an objective, keyed by a canonical config: a config is never evaluated
twice. Every new evaluation is appended (and fsynced) to a JSONL log; a killed search replays that
log on resume, so the same algorithm with the same seed walks the same path without evaluating
anything again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from shears.adapters.search_space import Config, SearchSpace
from shears.config import same_spec
from shears.errors import ShearsError
from shears.search.size_limit import check_max_params, fits, project
from shears.search.space_ops import config_key

logger = logging.getLogger(__name__)


@runtime_checkable
class Objective(Protocol):
    """What the evaluator needs from an objective. Optional extras (duck-typed):
    ``set_anchor(config)`` (a hint: many configs near this one follow) and
    ``estimate(config, candidates) -> list[float] | None`` (cheap estimated scores)."""

    name: str
    maximize: bool

    def __call__(self, config: Config) -> float: ...


class BudgetExhausted(Exception):
    """Raised by :class:`CachedEvaluator` when a *new* evaluation would exceed the budget.

    Algorithms catch it and return the best configuration seen so far (it never reaches users).
    """


@dataclass
class Evaluation:
    index: int
    config: Config
    score: float
    adapter_parameters: int
    time_s: float
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CachedEvaluator:
    """Cached, budgeted, logged evaluation of sub-adapter configs.

    ``budget``: the most distinct configs evaluated (None = unlimited). ``log_path``: JSONL log;
    ``resume=True`` replays the records of an existing log (same ``fingerprint`` required).
    Scores are what the objective returns; algorithms compare :meth:`cost` (lower is better).
    ``max_params`` (0 / None = no limit): a config with more adapter parameters is never evaluated
    nor counted against ``budget``; its cost is +inf, and :meth:`best` never returns it.
    ``write_log=False``: only read the log (to resume), never write it: the other processes of a
    data-parallel search, which read it after the main one has prepared it.
    """

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        budget: int | None = None,
        log_path: str | Path | None = None,
        resume: bool = False,
        fingerprint: dict[str, Any] | None = None,
        max_params: int | None = None,
        write_log: bool = True,
    ) -> None:
        if budget is not None and budget < 1:
            raise ShearsError(f"budget must be >= 1 evaluation, got {budget}")
        check_max_params(space, max_params)
        self.space = space
        self.max_params = max_params or None
        self.objective = objective
        self.budget = budget
        self.maximize = bool(objective.maximize)
        self.fingerprint = dict(fingerprint or {})
        self.history: list[Evaluation] = []
        self._cache: dict[str, Evaluation] = {}
        self._replay: dict[str, dict[str, Any]] = {}
        self.objective_calls = 0
        self.log_path = Path(log_path) if log_path else None
        self.write_log = write_log
        if self.log_path is not None:
            if resume and self.log_path.is_file():
                self._replay = self._read_log(self.log_path)
                logger.info("resuming: %d logged evaluations to replay", len(self._replay))
            elif write_log:
                self._write_header()

    # ------------------------------------------------------------------ log
    def _write_header(self) -> None:
        assert self.log_path is not None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as fh:
            fh.write(json.dumps({"header": self.fingerprint}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _read_log(self, path: Path) -> dict[str, dict[str, Any]]:
        lines = path.read_text().splitlines()
        if not lines:
            if self.write_log:
                self._write_header()
            return {}
        try:
            header = json.loads(lines[0])["header"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ShearsError(f"search log {str(path)!r} has no valid header line") from exc
        diff = sorted(
            k
            for k in set(header) | set(self.fingerprint)
            if not same_spec(header.get(k), self.fingerprint.get(k))  # paths: resolved
        )
        if diff:
            raise ShearsError(
                f"search log {str(path)!r} was written with other settings ({', '.join(diff)}); "
                "resume with the same settings or start again with --overwrite"
            )
        out: dict[str, dict[str, Any]] = {}
        for n, line in enumerate(lines[1:], start=2):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):  # a line cut short by a kill: evaluate that config again
                    logger.warning("ignoring a truncated last line in %s", path)
                    break
                raise ShearsError(f"search log {str(path)!r}: line {n} is not JSON") from None
            out[rec["key"]] = rec
        if not self.write_log:
            return out
        # rewrite without a possibly truncated tail, so appends start on a clean line
        with open(path, "w") as fh:
            fh.write(lines[0] + "\n")
            for rec in out.values():
                fh.write(json.dumps(rec) + "\n")
        return out

    def _append_log(self, key: str, ev: Evaluation) -> None:
        if self.log_path is None or not self.write_log:
            return
        rec = {"key": key, **ev.to_dict()}
        rec.pop("resumed")
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # ------------------------------------------------------------------ evaluate
    def key(self, config: Config) -> str:
        return config_key(self.space, config)

    def cost(self, score: float) -> float:
        """Lower is better; NaN scores are worst."""
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return math.inf
        return -score if self.maximize else score

    def is_known(self, config: Config) -> bool:
        """True if ``config`` was evaluated in this run (free to ask again)."""
        return self.key(config) in self._cache

    def fits(self, config: Config) -> bool:
        """Whether ``config`` is within ``max_params`` (always, without a limit)."""
        return fits(self.space, config, self.max_params)

    def project(self, config: Config) -> Config:
        """``config`` if it fits ``max_params``, else the largest uniform config that does."""
        return project(self.space, config, self.max_params)

    def worst_score(self) -> float:
        """The score whose :meth:`cost` is +inf: what a config over ``max_params`` gets."""
        return -math.inf if self.maximize else math.inf

    @property
    def n_evaluations(self) -> int:
        return len(self.history)

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - len(self.history)

    def __call__(self, config: Config) -> float:
        """Score of ``config``: from the cache, the resume log, or one objective call."""
        try:
            key = self.key(config)
        except (KeyError, TypeError, ValueError):
            self.space.validate(config)  # raises a ShearsError naming what is wrong
            raise
        hit = self._cache.get(key)
        if hit is not None:
            return hit.score
        config = self.space.validate(config)
        if not self.fits(config):  # never evaluated, cached or counted
            return self.worst_score()
        if self.budget is not None and len(self.history) >= self.budget:
            raise BudgetExhausted
        params = self.space.adapter_parameters(config)
        rec = self._replay.pop(key, None)
        if rec is not None:
            ev = Evaluation(
                len(self.history), config, rec["score"], params, rec["time_s"], resumed=True
            )
        else:
            t0 = time.perf_counter()
            score = float(self.objective(config))
            self.objective_calls += 1
            ev = Evaluation(
                len(self.history), config, score, params, round(time.perf_counter() - t0, 4)
            )
            self._append_log(key, ev)
            logger.info(
                "eval %d: %s=%.5f, adapter params %d (%.2fs)",
                ev.index,
                self.objective.name,
                score,
                params,
                ev.time_s,
            )
        self._cache[key] = ev
        self.history.append(ev)
        return ev.score

    def cost_of(self, config: Config) -> float:
        return self.cost(self(config))

    def best(self) -> Evaluation | None:
        """Best evaluation so far (earliest on ties); always within ``max_params`` (only configs
        that fit are evaluated)."""
        best = None
        for ev in self.history:
            if best is None or self.cost(ev.score) < self.cost(best.score):
                best = ev
        return best

    # ------------------------------------------------------------------ objective extras
    def set_anchor(self, config: Config) -> None:
        fn = getattr(self.objective, "set_anchor", None)
        if fn is not None:
            fn(config)

    def estimate(self, config: Config, candidates: list[Config]) -> list[float] | None:
        """Estimated *costs* of ``candidates`` (neighbours of ``config``), or None if the
        objective cannot estimate."""
        fn = getattr(self.objective, "estimate", None)
        if fn is None or not candidates:
            return None
        est = fn(config, candidates)
        return None if est is None else [self.cost(s) for s in est]
