"""Context-length checks: every sequence length a stage asks for must fit the model's positions.

Learned position embeddings (GPT-2, OPT) fail with an IndexError past their table; RoPE models
(LLaMA, Qwen2, Gemma) run on silently past the context they were trained for. Each stage checks
its lengths against :func:`shears.models.max_positions` before it loads or tokenizes data: once
from the model's config alone (where that needs no weights), again right after loading the model.

Lengths that depend on the data are handled where the data is tokenized: a generation prompt or a
multiple-choice context longer than the rest of the context is cut from the left (logged; see
:mod:`shears.evaluate.generate` and :mod:`shears.evaluate.choice`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shears.errors import ShearsError
from shears.models import ContextLimit, max_positions

if TYPE_CHECKING:
    from shears.evaluate.config import EvalConfig
    from shears.evaluate.tasks import TaskSpec
    from shears.prune.config import PruneConfig
    from shears.search.config import SearchConfig
    from shears.train.config import TrainConfig

GENERATIVE_KINDS = ("math", "letter", "mc_gen")


def flag_name(key: str, prefix: str = "--") -> str:
    """``--ppl-seqlen`` for the CLI (prefix ``--``), ``prune.ppl_seqlen`` for a run config."""
    return f"--{key.replace('_', '-')}" if prefix == "--" else f"{prefix}{key}"


def check_length(
    value: int, flag: str, limit: ContextLimit | None, reserve: int = 0, note: str = ""
) -> None:
    """Raise a ShearsError when ``value`` (+ ``reserve`` positions that must stay free) exceeds
    ``limit``; ``None`` (no limit, or not known yet) passes. ``note`` follows the value."""
    if limit is None or value + reserve <= limit.positions:
        return
    most = limit.positions - reserve
    what = f"{flag} {value}{f' ({note})' if note else ''}"
    room = " and leaves no position for a prompt" if reserve else ""
    fix = (
        f"use {flag} <= {most}" if most >= 1 else f"use a model with more than {reserve} positions"
    )
    raise ShearsError(
        f"{what} exceeds the model's {limit.positions} positions ({limit.key}){room}; {fix}"
    )


def check_prune_context(cfg: PruneConfig, limit: ContextLimit | None, prefix: str = "--") -> None:
    """Calibration windows (``seqlen``) and perplexity windows (``ppl_seqlen``, with
    ``eval_ppl``) must fit the model."""
    if cfg.needs_calibration:
        check_length(cfg.seqlen, flag_name("seqlen", prefix), limit)
    if cfg.eval_ppl:
        check_length(cfg.ppl_seqlen, flag_name("ppl_seqlen", prefix), limit)


def check_train_context(cfg: TrainConfig, limit: ContextLimit | None, prefix: str = "--") -> None:
    """Training examples are cut to ``cutoff_len`` tokens: it must fit the model."""
    check_length(cfg.cutoff_len, flag_name("cutoff_len", prefix), limit)


def check_search_context(
    cfg: SearchConfig,
    settings: dict[str, Any],
    limit: ContextLimit | None,
    prefix: str = "--",
) -> None:
    """The loss objective cuts validation examples to ``cutoff_len`` (``--cutoff-len`` or the
    training run's); the math objective generates ``max_new_tokens`` after each prompt."""
    if cfg.objective == "loss":
        inherited = cfg.cutoff_len is None
        note = "the training run's cutoff_len" if inherited else ""
        check_length(settings["cutoff_len"], flag_name("cutoff_len", prefix), limit, note=note)
    if cfg.objective == "math":
        check_length(cfg.max_new_tokens, flag_name("max_new_tokens", prefix), limit, reserve=1)


def check_eval_context(
    cfg: EvalConfig, specs: list[TaskSpec], limit: ContextLimit | None, prefix: str = "--"
) -> None:
    """Generative tasks generate ``max_new_tokens`` after a prompt (at least one position stays
    for it); perplexity tasks score windows of ``ppl_seqlen``."""
    kinds = {s.kind for s in specs}
    if kinds & set(GENERATIVE_KINDS):
        check_length(cfg.max_new_tokens, flag_name("max_new_tokens", prefix), limit, reserve=1)
    if "ppl" in kinds:
        check_length(cfg.ppl_seqlen, flag_name("ppl_seqlen", prefix), limit)


def check_plan_context(plan: Any) -> None:
    """Every length of a ``shears run`` plan against the base model, before the first stage;
    errors name the run-config key (``prune.seqlen``...). Skipped when the base model's config
    cannot be read without loading it (each stage checks again after loading)."""
    prune = plan.prune
    limit = max_positions(prune.model, prune.gguf_file, prune.trust_remote_code)
    if limit is None:
        return
    check_prune_context(prune, limit, "prune.")
    check_train_context(plan.train, limit, "train.")
    search = plan.search
    settings = {"cutoff_len": search.cutoff_len or plan.train.cutoff_len}
    check_search_context(search, settings, limit, "search.")
    for ec in plan.evals.values():
        check_eval_context(ec, ec.task_specs(), limit, "eval.")
