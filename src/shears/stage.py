"""The fields the stage configs share, declared and checked once.

``StageConfig`` holds what every stage has (``model``, ``output_dir``, ``dtype``, ``device``);
``SeededConfig``, ``OverwriteConfig`` and ``ResumableConfig`` add ``seed``, ``overwrite`` and
``resume`` to the stages that have them (``class TrainConfig(ResumableConfig, SeededConfig)``).
The shared fields come first, in that order, then the stage's own. A stage re-declares a shared
field only to keep its own default or help text. A stage's ``__post_init__`` runs its own checks,
then ``super().__post_init__()``, which runs the shared ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shears.config import field
from shears.errors import ShearsError


@dataclass
class StageConfig:
    """Fields of every stage: its model, its output folder, and where and how to load the model."""

    model: str = field("smollm2-135m", help="model: named default, local folder, .gguf or hub id")
    output_dir: str = field("", help="output folder")
    dtype: str = field("auto", help="auto (bf16/fp16 on GPU, fp32 on CPU), float32, bfloat16...")
    device: str = field("auto", help="auto, cpu, cuda, cuda:N")

    def __post_init__(self) -> None:
        """The checks of the shared fields (the end of the ``super()`` chain)."""

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


@dataclass
class SeededConfig(StageConfig):
    """A stage that draws random numbers (calibration windows, training, search)."""

    seed: int = field(0, help="random seed")


@dataclass
class OverwriteConfig(StageConfig):
    """A stage that replaces its earlier output folder only when asked (``shears.outputs``)."""

    overwrite: bool = field(False, help="replace an existing output folder")


@dataclass
class ResumableConfig(OverwriteConfig):
    """A stage that can continue an interrupted run in its output folder."""

    resume: bool = field(False, help="continue an interrupted run from its output folder")

    def __post_init__(self) -> None:
        if self.overwrite and self.resume:
            raise ShearsError("--overwrite and --resume exclude each other; choose one")
        super().__post_init__()
