"""W8A8 calibration text for ``shears deploy``: the adapter's own training data, or a text source.

``--calibration`` is ``auto`` (the default), ``task``, or a text source of
:mod:`shears.data.calibration` (``default``, a file, a ``datasets`` name). ``task`` reads the
training examples recorded in the super-adapter's ``train_config.json`` (same data, split, fields,
size and seed as the training run) and renders each as the text the model was tuned on: the
prompt in the run's prompt style followed by the answer. Activation ranges then come from the
distribution the deployed model will serve. ``auto`` is ``task`` when ``--adapter`` records its
training data, else ``default``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from shears.errors import ShearsError

logger = logging.getLogger(__name__)

AUTO = "auto"
TASK = "task"


def resolve(calibration: str, adapter: str | None) -> str:
    """The calibration source ``auto`` stands for (``task`` or ``default``); others as given."""
    if calibration != AUTO:
        return calibration
    from shears.artifacts import read_train_settings

    return TASK if adapter and read_train_settings(adapter).data else "default"


def check(calibration: str, adapter: str | None, what: str = "--calibration") -> str:
    """Check the (resolved) calibration source before any model is loaded; return it."""
    source = resolve(calibration, adapter)
    if source != TASK:
        from shears.data.spec import validate_source

        validate_source(source, what)
        return source
    if not adapter:
        raise ShearsError(
            f"{what} task reads the training data of --adapter, and no adapter is given; "
            "pass --adapter DIR or a text source ('default', a text/JSON/JSONL file, a datasets "
            "name)"
        )
    _train_config(adapter, what)
    return source


def _train_config(adapter: str, what: str) -> Any:
    """The TrainConfig the adapter was trained with (its data path made usable from here)."""
    import dataclasses

    from shears.artifacts import TRAIN_CONFIG, read_train_config, read_train_settings
    from shears.config import from_dict
    from shears.train.config import TrainConfig

    raw = read_train_config(adapter)
    settings = read_train_settings(adapter)
    if not raw or not settings.data:
        raise ShearsError(
            f"{what} task: {adapter!r} has no {TRAIN_CONFIG} recording its training data; "
            "pass a text source instead ('default', a text/JSON/JSONL file, a datasets name)"
        )
    known = {f.name for f in dataclasses.fields(TrainConfig) if f.init}
    cfg = from_dict(TrainConfig, {k: v for k, v in raw.items() if k in known})
    return dataclasses.replace(cfg, data=settings.path("data"))


def task_texts(adapter: str, tokenizer: Any) -> list[str]:
    """Each training example of the adapter's run as prompt (its prompt style) + answer."""
    from shears.data.prompts import format_prompt
    from shears.train.data import load_train_examples

    cfg = _train_config(adapter, "--calibration")
    rows = load_train_examples(cfg)
    if not rows:
        raise ShearsError(f"--calibration task: the training data {cfg.data!r} holds no examples")
    style = cfg.prompt_style
    return [
        format_prompt(r["instruction"], r.get("input", "") or "", style, tokenizer) + r["output"]
        for r in rows
    ]


def windows(
    source: str,
    adapter: str | None,
    tokenizer: Any,
    nsamples: int,
    seqlen: int,
    seed: int,
    text_field: str = "text",
    data_split: str = "train",
) -> torch.Tensor:
    """Calibration windows (nsamples, seqlen) of the resolved ``source``."""
    from shears.data.calibration import calibration_ids, windows_from_texts

    if source == TASK:
        texts = task_texts(str(adapter), tokenizer)
        shuffled = torch.randperm(len(texts), generator=torch.Generator().manual_seed(seed))
        texts = [texts[i] for i in shuffled.tolist()]
        return windows_from_texts(
            tokenizer, texts, nsamples, seqlen, seed, name=f"the training data of {adapter}"
        )
    return calibration_ids(
        tokenizer,
        source,
        nsamples=nsamples,
        seqlen=seqlen,
        seed=seed,
        text_field=text_field,
        data_split=data_split,
    )
