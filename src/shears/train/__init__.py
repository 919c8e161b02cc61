"""NLS training of the elastic LoRA super-adapter (Shears stage 2), on the Hugging Face Trainer."""

from shears.train.config import TrainConfig
from shears.train.nls import last_checkpoint, run_train, train_nls
from shears.train.trainer import NLSCallback, NLSTrainer, NonFiniteLossError

__all__ = [
    "NLSCallback",
    "NLSTrainer",
    "NonFiniteLossError",
    "TrainConfig",
    "last_checkpoint",
    "run_train",
    "train_nls",
]
