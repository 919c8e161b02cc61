"""The search stage, ``run(cfg)`` (``shears.search.run_search``): check the inputs, load the model
with its super-adapter, search, write results, log and plots.

Output folder: ``search_results.json`` (algorithm, objective, budget, max_params, every evaluated
config with its score and adapter size, ``best`` = {config, score, adapter_parameters}, time),
``search_log.jsonl`` (one line per evaluation: a killed search resumes from it),
``search_progress.png`` and ``search_ranks.png``.

Launched as several processes (``torchrun --nproc_per_node N -m shears search``, ``accelerate
launch --num_processes N -m shears search``), every process checks, loads and runs the same
algorithm in lock-step (same seed, same candidates); each candidate's validation batches are
shared between them and its score combined so that every process gets the same number as one
process (:mod:`shears.search.answer_loss`, :mod:`shears.evaluate.parallel`). Only the main process
writes (the output folder, the log, the results and plots) and logs; the others read a resumed log
after it has prepared it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from shears.adapters.search_space import Config, SearchSpace
from shears.adapters.select import SEARCH_START, resolve_sub_adapter
from shears.artifacts import (
    SEARCH_LOG,
    SEARCH_PLOT,
    SEARCH_RANKS_PLOT,
    SEARCH_RESULTS,
    read_train_settings,
)
from shears.config import absolute_spec
from shears.context import check_search_context
from shears.errors import ShearsError
from shears.evaluate.parallel import SINGLE, DataParallel
from shears.models import max_positions
from shears.outputs import (
    MARKER,
    check_output,
    claim,
    remove_own,
    swap_in,
    temp_sibling,
    write_marker,
)
from shears.search.algorithms import run_algorithm
from shears.search.config import OBJECTIVE_FIELDS, AlgorithmConfig, SearchConfig
from shears.search.evaluator import CachedEvaluator, Objective
from shears.search.result import SearchResult, SearchSetup
from shears.search.size_limit import check_max_params, check_reference_fits
from shears.utils import peak_memory

logger = logging.getLogger(__name__)

OUR_FILES = (SEARCH_RESULTS, SEARCH_LOG, SEARCH_PLOT, SEARCH_RANKS_PLOT)


# ---------------------------------------------------------------------------- check


def check_space_fits(space: SearchSpace, adapter_space: SearchSpace, where: str = "") -> None:
    """A search space must only name the adapter's modules, with widths the adapter holds."""
    known = set(adapter_space.modules)
    for g in space.groups:
        for m in g.modules:
            if m not in known:
                raise ShearsError(
                    f"search space{where} does not match the adapter: group {g.name!r} names "
                    f"module {m!r}, which has no adapter (adapter modules look like "
                    f"{adapter_space.modules[0]!r})"
                )
        if g.widths[0] > adapter_space.r_max:
            raise ShearsError(
                f"search space{where} does not match the adapter: group {g.name!r} has width "
                f"{g.widths[0]} > the adapter's r_max {adapter_space.r_max}"
            )
    missing = known - set(space.modules)
    if missing:
        logger.warning(
            "%d adapter modules are in no group of the search space; they stay at r_max",
            len(missing),
        )


def search_inputs(cfg: SearchConfig) -> list[str | None]:
    """What ``shears search`` reads: the output folder must not overlap any of it."""
    return [cfg.adapter, cfg.model, cfg.data, cfg.space, cfg.start]


def prepare_output(cfg: SearchConfig) -> tuple[Path, Path]:
    """Check the output folder before any work; return ``(folder, folder to write in now)``.

    A new or resumed search writes in place (its log makes it resumable); ``--overwrite`` of an
    earlier search writes beside it and replaces it only when done (:func:`finish_output`)."""
    out = check_output(
        cfg.output_dir,
        "search",
        overwrite=cfg.overwrite,
        resume=cfg.resume,
        inputs=search_inputs(cfg),
    )
    if cfg.overwrite and out.is_dir() and any(e.name != MARKER for e in out.iterdir()):
        return out, temp_sibling(out)
    claim(out, "search", OUR_FILES)
    return out, out


def finish_output(out: Path, work: Path) -> None:
    """Swap a replacement search (written in ``work``) in for the earlier one."""
    if work != out:
        write_marker(work, "search", OUR_FILES)
        swap_in(work, out, "search")


def space_digest(space: SearchSpace) -> str:
    text = json.dumps([[g.name, g.modules, g.widths] for g in space.groups])
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class SearchPlan:
    """What the checks resolve before any weights load."""

    model: str  # the base model's spec: as given, else the adapter's or the training's
    space: SearchSpace
    start: Config
    settings: dict[str, Any]  # the validation data settings (:mod:`shears.search.data`)
    examples: list[dict]

    @property
    def data(self) -> dict[str, Any]:
        """The data settings as recorded in the results and the resume fingerprint."""
        return {k: v for k, v in self.settings.items() if k != "from_training"}


def check_size_limit(cfg: SearchConfig, space: SearchSpace) -> None:
    """``--max-params`` must admit the minimal config, and a reference point itself."""
    check_max_params(space, cfg.max_params)
    if cfg.algorithm in ("heuristic", "min", "max"):
        check_reference_fits(space, cfg.algorithm, cfg.max_params)


def check(cfg: SearchConfig) -> SearchPlan:
    """Every check that needs no weights, the cheap ones first; then the validation examples."""
    from shears.adapters.io import SuperAdapter, warn_if_other_base
    from shears.search.data import load_validation_examples, resolve_data_settings

    if not Path(cfg.adapter).is_dir():
        raise ShearsError(f"adapter folder {cfg.adapter!r} does not exist")
    saved = SuperAdapter.read(cfg.adapter)
    adapter_space = saved.space
    warn_if_other_base(cfg.adapter, cfg.model, "searched")
    space = SearchSpace.load(cfg.space, "--space file") if cfg.space else adapter_space
    if cfg.space:
        check_space_fits(space, adapter_space, f" {cfg.space!r}")
    check_size_limit(cfg, space)
    start = resolve_sub_adapter(cfg.start, space, SEARCH_START).config
    check_output(  # the output folder first: a refusal costs nothing (prepare_output claims it)
        cfg.output_dir,
        "search",
        overwrite=cfg.overwrite,
        resume=cfg.resume,
        inputs=search_inputs(cfg),
    )
    train = read_train_settings(cfg.adapter)
    settings = resolve_data_settings(cfg, train)
    model_spec = cfg.model or saved.base_spec or train.path("model") or "smollm2-135m"
    check_search_context(cfg, settings, max_positions(model_spec))  # before reading the data
    examples = load_validation_examples(settings, OBJECTIVE_FIELDS[cfg.objective])
    return SearchPlan(model_spec, space, start, settings, examples)


# ---------------------------------------------------------------------------- load


def build_objective(
    cfg: SearchConfig,
    plan: SearchPlan,
    model: nn.Module,
    tokenizer: Any,
    layers: dict,
    parallel: DataParallel = SINGLE,
) -> Objective:
    """The objective ``cfg.objective`` on the plan's validation examples (their batches shared
    between the processes of ``parallel``)."""
    space, settings, examples = plan.space, plan.settings, plan.examples
    if cfg.objective == "loss":
        from shears.search.answer_loss import AnswerLossObjective, encode_validation

        batches = encode_validation(
            tokenizer, examples, settings["prompt_style"], settings["cutoff_len"], cfg.batch_size
        )
        return AnswerLossObjective(
            model, layers, space, batches, cfg.reuse_prefix, cfg.gather_logits, parallel
        )
    if cfg.objective == "math":
        from shears.search.objectives import MathAccuracyObjective

        return MathAccuracyObjective(
            model,
            tokenizer,
            layers,
            space,
            examples,
            settings["prompt_style"],
            cfg.batch_size,
            cfg.max_new_tokens,
            parallel=parallel,
        )
    from shears.search.objectives import ChoiceAccuracyObjective

    return ChoiceAccuracyObjective(
        model,
        tokenizer,
        layers,
        space,
        examples,
        settings["prompt_style"],
        cfg.batch_size,
        cfg.choice_metric,
        parallel=parallel,
    )


def load(cfg: SearchConfig, plan: SearchPlan, parallel: DataParallel = SINGLE) -> Objective:
    """Load the model with the super-adapter (eval mode, no dropout; on this process's own GPU
    when ``parallel`` shares a machine's GPUs); return the objective."""
    from shears.adapters.io import SuperAdapter
    from shears.models import load_model

    model, tok = load_model(plan.model, cfg.dtype, parallel.device(cfg.device))
    check_search_context(cfg, plan.settings, max_positions(model))  # GGUF / hub models: now
    layers = SuperAdapter.load(model, cfg.adapter, dropout=0.0).layers
    model.eval()
    return build_objective(cfg, plan, model, tok, layers, parallel)


# ---------------------------------------------------------------------------- search and write


def fingerprint(
    cfg: SearchConfig, plan: SearchPlan, objective: Objective, autocast: str = "off"
) -> dict[str, Any]:
    """What a resumed search must share with the logged one (paths made absolute; ``autocast``:
    the label the candidates run under, recorded only when on, as logs before it)."""
    return {
        "adapter": str(Path(cfg.adapter).resolve()),
        "model": absolute_spec(plan.model),
        "objective": objective.name,
        "space": space_digest(plan.space),
        "dtype": cfg.dtype,
        **plan.data,
        "batch_size": cfg.batch_size if cfg.objective != "loss" else None,
        "max_new_tokens": cfg.max_new_tokens if cfg.objective == "math" else None,
        **({"max_params": cfg.max_params} if cfg.max_params else {}),  # old logs: no key
        **({"autocast": autocast} if autocast != "off" else {}),
    }


def setup(cfg: SearchConfig, plan: SearchPlan) -> SearchSetup:
    """Where the search ran, for its results: the paths as given and made absolute, the data."""
    resolved = {
        "model": absolute_spec(plan.model),
        "adapter": absolute_spec(cfg.adapter, local=True),
        "output_dir": absolute_spec(cfg.output_dir, local=True),
    }
    return SearchSetup(plan.model, cfg.adapter, plan.data, resolved, len(plan.examples))


def write_results(result: SearchResult, cfg: SearchConfig, space: SearchSpace, out: Path) -> None:
    """``search_results.json`` and (unless ``cfg.plots`` is off) the two plots, into ``out``."""
    result.write(out)
    if not cfg.plots:
        return
    from shears.search.plots import plot_progress, plot_ranks

    history = [e.to_dict() for e in result.history]
    plot_progress(history, result.objective, result.maximize, out / SEARCH_PLOT)
    if result.best:
        widths = {g.name: g.widths for g in space.groups}
        plot_ranks(result.best.config, widths, out / SEARCH_RANKS_PLOT)


def make_evaluator(
    cfg: SearchConfig,
    space: SearchSpace,
    objective: Objective,
    log: Path,
    header: dict[str, Any],
    parallel: DataParallel = SINGLE,
) -> CachedEvaluator:
    """The cached evaluator of the search (``header``: the log's :func:`fingerprint`): the main
    process starts the log ``log`` (or reads and tidies it to resume); then the others read it,
    never writing it."""

    def build(main: bool) -> CachedEvaluator:
        return CachedEvaluator(
            space,
            objective,
            cfg.budget,
            log,
            resume=cfg.resume,
            fingerprint=header,
            max_params=cfg.max_params,
            write_log=main,
        )

    evaluator = build(True) if parallel.is_main else None
    parallel.wait()  # the main process has prepared the log
    return evaluator if evaluator is not None else build(False)


def _search(
    cfg: SearchConfig, plan: SearchPlan, out: Path, t0: float, parallel: DataParallel = SINGLE
) -> SearchResult:
    """Load the model and adapter, run the algorithm (its forward passes under the autocast of
    ``cfg.precision``), write results, log and plots into ``out`` (the main process of
    ``parallel`` only)."""
    from shears.evaluate.generate import model_device
    from shears.evaluate.suite import eval_autocast
    from shears.precision import autocast, describe

    objective = load(cfg, plan, parallel)
    dtype = eval_autocast(objective.model, cfg.precision)
    label = describe(dtype)
    space = plan.space
    header = fingerprint(cfg, plan, objective, label)
    evaluator = make_evaluator(cfg, space, objective, out / SEARCH_LOG, header, parallel)
    logger.info(
        "searching %d groups (%s) with %s on %s, budget %d%s",
        len(space.groups),
        "widths " + str(space.groups[0].widths),
        cfg.algorithm,
        objective.name,
        cfg.budget,
        f", at most {cfg.max_params} adapter parameters" if cfg.max_params else "",
    )
    with autocast(dtype, model_device(objective.model)):
        outcome = run_algorithm(evaluator, AlgorithmConfig.of(cfg), start=plan.start)
    elapsed = time.perf_counter() - t0
    result = SearchResult.build(
        cfg, evaluator, outcome, elapsed, setup(cfg, plan), peak_memory(), label
    )
    if parallel.is_main:
        write_results(result, cfg, space, out)
    best = result.best
    logger.info(
        "best %s=%s with %d adapter parameters after %d evaluations (%s); wrote %s",
        objective.name,
        best.score if best else None,
        best.adapter_parameters if best else 0,
        evaluator.n_evaluations,
        outcome.stop_reason,
        cfg.output_dir,
    )
    return result


def run(cfg: SearchConfig) -> SearchResult:
    """Search the super-adapter ``cfg.adapter`` for a sub-adapter; return the results (also
    written to ``<output_dir>/search_results.json``; on every process of a data-parallel launch,
    the main one writes). Bad input fails before the model loads."""
    from shears.evaluate.run import quiet_other_ranks

    t0 = time.perf_counter()
    parallel = DataParallel.current(cfg.device)
    quiet_other_ranks(parallel)
    plan = check(cfg)
    parallel.wait()  # every process checked the output folder before the main one claims it
    if not parallel.is_main:  # reads the log in place (to resume); writes nothing
        result = _search(cfg, plan, cfg.output_path, t0, parallel)
        parallel.wait()  # the main process has written the results
        return result
    new_folder = not cfg.output_path.exists()
    out, work = prepare_output(cfg)
    try:
        result = _search(cfg, plan, work, t0, parallel)
    except BaseException:
        if work != out:
            shutil.rmtree(work, ignore_errors=True)
        elif new_folder and not (out / SEARCH_LOG).is_file():
            remove_own(out, "search")  # failed before its first evaluation: nothing to keep
        raise
    finish_output(out, work)
    logger.info("wrote %s", out / SEARCH_RESULTS)
    parallel.wait()
    return result
