"""Validation examples for the search: the training data's validation split, never test."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shears.config import absolute_spec, recorded_path
from shears.errors import ShearsError
from shears.inputs import read_json_file

logger = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.json"


def read_train_config(adapter_dir: str | Path) -> dict[str, Any]:
    """The ``train_config.json`` in (or next to) a super-adapter folder; ``{}`` if none."""
    d = Path(adapter_dir)
    for cand in (d / TRAIN_CONFIG, d.parent / TRAIN_CONFIG):
        if cand.is_file():
            data = read_json_file(cand, "training config")
            return data if isinstance(data, dict) else {}
    return {}


def _train_path(train: dict[str, Any], key: str) -> str | None:
    """A path setting of ``train_config.json``, usable from any current folder: its recorded
    absolute form when that exists, else as given."""
    resolved = train.get("resolved")
    return recorded_path(train.get(key), resolved.get(key) if isinstance(resolved, dict) else None)


def train_model(train: dict[str, Any]) -> str:
    """The model a ``train_config.json`` trained on (default ``smollm2-135m``)."""
    return _train_path(train, "model") or "smollm2-135m"


def resolve_data_settings(cfg, train: dict[str, Any]) -> dict[str, Any]:
    """Validation data settings: explicit search flags, else the training run's. A local data
    path is made absolute (it is part of the resume fingerprint)."""
    return {
        "data": absolute_spec(cfg.data) or _train_path(train, "data") or "gym:gsm_symbolic",
        "data_config": train.get("data_config") if not cfg.data else None,
        "data_fields": (train.get("data_fields") or {}) if not cfg.data else {},
        "data_split": cfg.data_split,
        "val_size": cfg.val_size,
        "data_seed": cfg.data_seed if cfg.data_seed is not None else int(train.get("data_seed", 0)),
        "train_size": int(train.get("train_size") or 0) if not cfg.data else 0,
        "prompt_style": cfg.prompt_style or train.get("prompt_style") or "alpaca",
        "cutoff_len": cfg.cutoff_len or int(train.get("cutoff_len") or 256),
        "from_training": not cfg.data,
    }


def load_validation_examples(settings: dict[str, Any], need: tuple[str, ...]) -> list[dict]:
    """``val_size`` examples of the validation split of ``settings['data']``.

    ``gym:<name>``: reasoning-gym problems of the validation *templates* (disjoint from train and
    test). A JSON/JSONL file: when it is the training file (no ``--data``), the records after the
    ``train_size`` the training used; else its first ``val_size`` records. Otherwise a `datasets`
    dataset's ``data_split``. ``need``: fields each example must have (``output`` for the loss,
    ``answer`` for math, ``choices`` for multiple choice).
    """
    from shears.data.tasks import load_hf_records, load_json_records, load_reasoning_gym

    src = settings["data"]
    n = settings["val_size"]
    if src.startswith("gym:"):
        rows = load_reasoning_gym(src[4:], settings["data_split"], n, seed=settings["data_seed"])
        if "choices" in need:
            from shears.evaluate.tasks import make_choices

            rows = make_choices(rows, 4, settings["data_seed"])
    else:
        path = Path(src)
        if path.suffix in (".json", ".jsonl") or path.is_file():
            rows = load_json_records(path)
            skip = settings.get("train_size") or 0
            if skip == 0 and settings.get("from_training", False):
                raise ShearsError(
                    f"training used every record of {src!r}: give held-out validation data "
                    "with --data (a JSON/JSONL file)"
                )
            rows = rows[skip : skip + n]
        else:
            name = src[3:] if src.startswith("hf:") else src
            rows = load_hf_records(
                name,
                settings.get("data_config"),
                settings["data_split"],
                settings.get("data_fields") or None,
            )[:n]
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
