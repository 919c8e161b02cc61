"""Training examples: load from the configured source, encode with the shared prompt module, and
check them before any training starts."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from shears.data.sources import load_instructions
from shears.data.spec import DataSpec
from shears.data.tokenize import IGNORE_INDEX, encode_example, pad_batch
from shears.errors import ShearsError

if TYPE_CHECKING:
    from shears.train.config import TrainConfig

logger = logging.getLogger(__name__)

DEFAULT_GYM_SIZE = 1000


def train_data_spec(cfg: TrainConfig) -> DataSpec:
    """Where the training run ``cfg`` takes its examples from."""
    return DataSpec.parse(
        cfg.data,
        config=cfg.data_config,
        split=cfg.data_split,
        fields=cfg.data_fields,
        size=cfg.train_size or DEFAULT_GYM_SIZE,
        seed=cfg.data_seed,
    )


def load_train_examples(cfg: TrainConfig) -> list[dict]:
    """Examples of ``cfg.data``, split ``data_split``: ``gym:<name>`` (reasoning-gym, split by
    template; ``train_size`` problems, default 1000), a ``.json`` / ``.jsonl`` file of Alpaca /
    LLM-Adapters records or a `datasets` dataset (``hf:<name>``), cut to ``train_size``."""
    return load_instructions(
        train_data_spec(cfg), n=cfg.train_size or None, require=("instruction", "output")
    )


class EncodedDataset(torch.utils.data.Dataset):
    """A list of encoded examples (``input_ids``, ``attention_mask``, ``labels``)."""

    def __init__(self, features: list[dict]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def encode_examples(
    tokenizer,
    examples: list[dict],
    style: str,
    cutoff_len: int,
    train_on_inputs: bool,
    add_eos: bool = True,
) -> tuple[EncodedDataset, dict]:
    """Encode ``examples`` with :func:`shears.data.tokenize.encode_example` and check them.

    Raises a ShearsError when there is no example, an example lacks ``instruction`` / ``output``,
    or ``cutoff_len`` leaves no answer token in any example. Examples without a single loss token
    (only possible with ``train_on_inputs=False``) are dropped. Returns the dataset and stats.
    """
    if not examples:
        raise ShearsError("the training data is empty; give at least one example")
    for i, ex in enumerate(examples):
        missing = [k for k in ("instruction", "output") if not str(ex.get(k, "") or "").strip()]
        if missing:
            raise ShearsError(
                f"training example {i} has no {missing[0]!r} text; every example needs "
                f"'instruction' and 'output' (found keys: {', '.join(sorted(ex))})"
            )
    features, with_answer, truncated, dropped, tokens = [], 0, 0, 0, 0
    for ex in examples:
        enc = encode_example(tokenizer, ex, style, cutoff_len, train_on_inputs, add_eos)
        n = len(enc["input_ids"])
        with_answer += n > enc["prompt_len"]
        truncated += n >= cutoff_len
        if all(label == IGNORE_INDEX for label in enc["labels"]):
            dropped += 1
            continue
        tokens += n
        features.append({k: enc[k] for k in ("input_ids", "attention_mask", "labels")})
    if with_answer == 0:
        raise ShearsError(
            f"cutoff_len {cutoff_len} is too short for any example: every prompt fills it "
            "before the answer starts; raise --cutoff-len"
        )
    if not features:
        raise ShearsError("no example has a token to train on; check the data and --cutoff-len")
    if dropped:
        logger.warning("dropped %d of %d examples with no answer token", dropped, len(examples))
    if truncated:
        logger.warning(
            "%d of %d examples were cut to cutoff_len %d", truncated, len(examples), cutoff_len
        )
    stats = {
        "examples": len(features),
        "examples_dropped": dropped,
        "examples_truncated": truncated,
        "tokens": tokens,
    }
    return EncodedDataset(features), stats


class PadCollator:
    """Right-pad a list of encoded examples into (batch, max_len) tensors (labels with -100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_id, side="right")
