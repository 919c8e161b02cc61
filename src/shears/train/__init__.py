"""NLS training of the elastic LoRA super-adapter (Shears stage 2), on the Hugging Face Trainer.

The stage: :func:`shears.train.run.run` (``run_train`` here) and ``train_nls`` (a model already
loaded), both returning a :class:`TrainResult`.
"""

from shears.train.config import TrainConfig
from shears.train.folder import last_checkpoint
from shears.train.result import TrainResult
from shears.train.run import run as run_train
from shears.train.run import train_nls
from shears.train.trainer import NLSCallback, NLSTrainer, NonFiniteLossError

__all__ = [
    "NLSCallback",
    "NLSTrainer",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "last_checkpoint",
    "run_train",
    "train_nls",
]
