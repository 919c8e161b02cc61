"""Bridge to lm-evaluation-harness (optional extra ``lmeval``: ``lm-eval==0.4.13``).

Runs harness tasks on the model already in memory (pruned, with an elastic sub-adapter active or
a PEFT adapter), through its ``HFLM`` wrapper built on the model instance. Local task YAMLs (and
their local data files) are found with ``include_path``, so this works offline.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from typing import Any

from torch import nn

from shears.errors import ShearsError
from shears.evaluate.generate import model_device

logger = logging.getLogger(__name__)

PRIMARY_METRICS = ("acc", "exact_match", "acc_norm", "f1", "mcc")


def lmeval_available() -> bool:
    """Whether lm-evaluation-harness is installed."""
    return importlib.util.find_spec("lm_eval") is not None


def require_lmeval() -> None:
    if not lmeval_available():
        raise ShearsError(
            "lmeval:<task> needs lm-evaluation-harness: pip install 'shears-nls[lmeval]' "
            "(lm-eval==0.4.13)"
        )


def _unwrap(model: nn.Module) -> nn.Module:
    """A PEFT ``PeftModel`` -> its underlying transformers model (adapters stay injected)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: str | None, defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=defaults)


def task_manager(tasks: list[str], include_path: str | None = None):
    """A harness TaskManager that knows ``tasks``. Indexing the ~15k built-in tasks takes many
    seconds, so when every task is found under ``include_path`` the built-ins are skipped;
    managers are cached per process."""
    require_lmeval()
    if include_path:
        local = _task_manager(include_path, False)
        if all(t in set(local.all_tasks) for t in tasks):
            return local
    return _task_manager(include_path, True)


def check_lmeval_tasks(tasks: list[str], include_path: str | None = None) -> None:
    """Fail early (before any model work) when a task name is unknown to the harness."""
    known = set(task_manager(tasks, include_path).all_tasks)
    missing = [t for t in tasks if t not in known]
    if missing:
        where = f" (include path {include_path!r})" if include_path else ""
        raise ShearsError(f"lm-eval knows no task {missing[0]!r}{where}")


def primary_metric(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The first of :data:`PRIMARY_METRICS` present in a harness result (``"acc,none"`` keys)."""
    for name in PRIMARY_METRICS:
        for key, value in metrics.items():
            if key.split(",")[0] == name and isinstance(value, (int, float)):
                return name, float(value)
    return None


def run_lmeval(
    model: nn.Module,
    tokenizer,
    tasks: list[str],
    include_path: str | None = None,
    batch_size: int = 16,
    limit: int | None = None,
    num_fewshot: int | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Run harness ``tasks`` on ``model``; returns ``{task: {metric: value, ..., "count": n}}``.

    Metric keys drop the harness' filter suffix (``acc,none`` -> ``acc``; other filters keep it,
    ``exact_match,strict-match``); standard errors are left out.
    """
    require_lmeval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    base = _unwrap(model)
    lm = HFLM(
        pretrained=base,
        tokenizer=tokenizer,
        batch_size=batch_size,
        device=str(model_device(base)),
    )
    tm = task_manager(list(tasks), include_path)
    out = simple_evaluate(
        model=lm,
        tasks=list(tasks),
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=tm,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=0,
    )
    if out is None:  # non-zero ranks in distributed runs
        return {}
    results: dict[str, dict[str, Any]] = {}
    n_samples = out.get("n-samples", {})
    for task, metrics in out["results"].items():
        clean: dict[str, Any] = {}
        for key, value in metrics.items():
            if "_stderr" in key or key == "alias" or not isinstance(value, (int, float)):
                continue
            name, _, filt = key.partition(",")
            clean[name if filt in ("", "none") else key] = float(value)
        info = n_samples.get(task, {})
        if isinstance(info, dict) and "effective" in info:
            clean["count"] = int(info["effective"])
        results[task] = clean
    return results
