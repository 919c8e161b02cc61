"""Validation examples for the search: the training data's validation split, never test."""

from __future__ import annotations

import logging
from typing import Any

from shears.artifacts import TrainSettings
from shears.config import absolute_spec
from shears.data.spec import DataSpec
from shears.errors import ShearsError

logger = logging.getLogger(__name__)


def resolve_data_settings(cfg, train: TrainSettings) -> dict[str, Any]:
    """Validation data settings: explicit search flags, else the training run's. A local data
    path is made absolute (it is part of the resume fingerprint)."""
    return {
        "data": absolute_spec(cfg.data) or train.path("data") or "gym:gsm_symbolic",
        "data_config": train.data_config if not cfg.data else None,
        "data_fields": train.data_fields if not cfg.data else {},
        "data_split": cfg.data_split,
        "val_size": cfg.val_size,
        "data_seed": cfg.data_seed if cfg.data_seed is not None else train.data_seed,
        "train_size": train.train_size if not cfg.data else 0,
        "prompt_style": cfg.prompt_style or train.prompt_style or "alpaca",
        "cutoff_len": cfg.cutoff_len or train.cutoff_len or 256,
        "from_training": not cfg.data,
    }


def validation_spec(settings: dict[str, Any]) -> DataSpec:
    """Where the validation examples of ``settings`` (:func:`resolve_data_settings`) come from."""
    return DataSpec.parse(
        settings["data"],
        config=settings.get("data_config"),
        split=settings["data_split"],
        fields=settings.get("data_fields") or {},
        size=settings["val_size"],
        seed=settings["data_seed"],
    )


def load_validation_examples(settings: dict[str, Any], need: tuple[str, ...]) -> list[dict]:
    """``val_size`` examples of the validation split of ``settings['data']``.

    ``gym:<name>``: reasoning-gym problems of the validation *templates* (disjoint from train and
    test). A JSON/JSONL file: when it is the training file (no ``--data``), the records after the
    ``train_size`` the training used; else its first ``val_size`` records. Otherwise a `datasets`
    dataset's ``data_split``. ``need``: fields each example must have (``output`` for the loss,
    ``answer`` for math, ``choices`` for multiple choice).
    """
    from shears.data.sources import load_instructions

    src, n = settings["data"], settings["val_size"]
    spec = validation_spec(settings)
    if spec.source == "json":
        rows = load_instructions(spec)
        skip = settings.get("train_size") or 0
        if skip == 0 and settings.get("from_training", False):
            raise ShearsError(
                f"training used every record of {src!r}: give held-out validation data "
                "with --data (a JSON/JSONL file)"
            )
        rows = rows[skip : skip + n]
    else:
        rows = load_instructions(spec, n=n)
    if spec.source == "gym" and "choices" in need:
        from shears.evaluate.tasks import make_choices

        rows = make_choices(rows, 4, spec.seed)
    if not rows:
        raise ShearsError(f"validation data {src!r} holds no examples")
    for key in need:
        missing = [i for i, r in enumerate(rows) if r.get(key) in (None, "", [])]
        if missing:
            raise ShearsError(
                f"validation data {src!r}: record {missing[0]} has no {key!r} field, which the "
                "chosen objective needs"
            )
    logger.info("validation: %d examples of %s (%s)", len(rows), src, settings["data_split"])
    return rows
