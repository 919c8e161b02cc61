"""``GenerateConfig``: everything ``shears generate`` needs, one documented field per flag."""

from __future__ import annotations

from dataclasses import dataclass

from shears.config import field
from shears.errors import ShearsError
from shears.evaluate.config import ModelSourceConfig
from shears.precision import PRECISIONS
from shears.stage import OverwriteConfig, SeededConfig


@dataclass
class GenerateConfig(ModelSourceConfig, OverwriteConfig, SeededConfig):
    """Settings of ``shears generate``."""

    # shared fields (shears.stage, ModelSourceConfig), with this stage's defaults and help
    model: str = field(
        "smollm2-135m",
        help="model: named default, local folder, .gguf, hub id, or a `shears deploy` folder",
    )
    output_dir: str = field(
        "",
        help="folder for completions.jsonl, generate_results.json and generate_config.json; "
        "empty: none, the completions are only printed",
    )
    overwrite: bool = field(False, help="replace a `shears generate` output in --output-dir")
    seed: int = field(0, help="random seed (sampling; greedy decoding does not draw)")
    prompts: list[str] = field(
        [], help="instructions to answer, formatted in --prompt-style (flag: --prompt, repeatable)"
    )
    prompts_file: str | None = field(
        None,
        help="file of instructions: .txt (one per line) or .jsonl (each line an object with "
        "'instruction' [+ 'input'], or 'prompt' or 'text')",
    )
    max_new_tokens: int = field(
        128, help="tokens generated per prompt at most; must be below the model's maximum positions"
    )
    batch_size: int = field(8, help="prompts per generation batch")
    temperature: float = field(
        0.0, help="0: greedy decoding; > 0: sample at this temperature (not for a deployed model)"
    )
    top_p: float = field(1.0, help="nucleus sampling: keep the top tokens of this probability mass")
    precision: str = field(
        "auto",
        help=f"compute precision, as in shears eval: {' | '.join(PRECISIONS)} (a deployed model "
        "computes in its own runtime)",
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ShearsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ShearsError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        self._check_sampling()
        self._check_prompt_source()
        super().__post_init__()

    def _check_sampling(self) -> None:
        if self.temperature < 0:
            raise ShearsError(f"--temperature must be >= 0 (0: greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ShearsError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_p < 1 and self.temperature == 0:
            raise ShearsError(
                f"--top-p {self.top_p} needs sampling: give --temperature > 0 (0 is greedy)"
            )

    def _check_prompt_source(self) -> None:
        if self.prompts and self.prompts_file:
            raise ShearsError(
                f"--prompt and --prompts-file {self.prompts_file!r} are both given; give one"
            )
        if not self.prompts and not self.prompts_file:
            raise ShearsError(
                "no prompts given: pass --prompt TEXT (repeatable) or --prompts-file FILE "
                "(.txt or .jsonl)"
            )
        empty = next((i for i, p in enumerate(self.prompts, 1) if not p.strip()), None)
        if empty is not None:
            raise ShearsError(f"--prompt number {empty} is empty; give the text to answer")

    @property
    def sampling(self) -> bool:
        """Whether tokens are sampled (else greedy)."""
        return self.temperature > 0
