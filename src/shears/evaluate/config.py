"""``EvalConfig``: everything ``shears eval`` needs, one documented field per flag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shears.config import ADDED, field
from shears.data.prompts import PROMPT_STYLES
from shears.errors import ShearsError
from shears.evaluate.tasks import TaskSpec, parse_task
from shears.precision import PRECISIONS, check_precision
from shears.stage import OverwriteConfig, SeededConfig, StageConfig


@dataclass
class ModelSourceConfig(StageConfig):
    """The fields that name a model the way ``shears eval`` loads it (also ``shears
    generate``): a GGUF file in it, a Shears super-adapter at a sub-adapter or a stock-PEFT
    adapter, the prompt style, the compute precision; checked once here."""

    gguf_file: str | None = field(None, help="GGUF file name inside a model folder")
    adapter: str | None = field(
        None, help="Shears super-adapter folder, or an exported stock-PEFT adapter folder"
    )
    sub_adapter: str = field(
        "heuristic",
        help="active sub-adapter of a super-adapter: heuristic, max, min, a JSON file of "
        "{group: rank} (or a search result holding one) or inline JSON",
    )
    prompt_style: str | None = field(
        None,
        help="alpaca or chat; must match training (default: the adapter's train_config.json, "
        "else alpaca)",
    )
    precision: str = field(
        "auto",
        help=f"compute precision of the forward passes: {' | '.join(PRECISIONS)} (bf16: bf16 "
        "autocast over fp32 weights; auto: bf16 autocast where the hardware has it and it was "
        "measured to keep quality; fp32: none); a model loaded in bf16/fp16 computes in it",
        metadata=ADDED,
    )

    def __post_init__(self) -> None:
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise ShearsError(
                f"--prompt-style {self.prompt_style!r} is not known; allowed: "
                f"{', '.join(PROMPT_STYLES)}"
            )
        check_precision(self.precision)
        super().__post_init__()


@dataclass
class EvalConfig(ModelSourceConfig, OverwriteConfig, SeededConfig):
    """Settings of ``shears eval``."""

    # shared fields (shears.stage), with this stage's defaults and help
    output_dir: str = field("runs/eval", help="where eval_results.json and predictions.jsonl go")
    overwrite: bool = field(False, help="replace results already in --output-dir")
    seed: int = field(0, help="seed (lm-eval sampling; generation is greedy)")
    tasks: list[Any] = field(
        ["gsm_symbolic", "gsm_symbolic_mc"],
        help="tasks: presets (gsm_symbolic, gsm_symbolic_mc, ppl, gsm8k...), <kind>:<file.json>, "
        "<kind>:gym:<generator>, <kind>:hf:<dataset>[:<config>], lmeval:<task>; kinds: math, "
        "letter, mc, mc_gen, ppl (mc: a question + choice longer than the model's maximum "
        "positions loses question tokens from the left, with a warning)",
    )
    max_new_tokens: int = field(
        256,
        help="generated tokens per answer (math, mc_gen); must be below the model's maximum "
        "positions, and a prompt longer than the rest is cut from the left (a warning counts "
        "them)",
    )
    batch_size: int = field(16, help="prompts per generation / scoring batch")
    limit: int | None = field(None, help="examples per task (default: all)")
    gym_size: int = field(200, help="problems generated for reasoning-gym tasks without --limit")
    ppl_seqlen: int = field(
        512, help="perplexity window length (tokens), at most the model's maximum positions"
    )
    ppl_stride: int | None = field(None, help="perplexity window stride (default: seqlen)")
    ppl_tokens: int = field(
        16384, help="held-out tokens scored for perplexity", aliases=("ppl_max_tokens",)
    )
    lmeval_include_path: str | None = field(
        None, help="folder of extra lm-eval task YAMLs (local tasks)"
    )
    num_fewshot: int | None = field(None, help="few-shot examples for lm-eval tasks")
    progress: bool = field(True, help="show progress bars")

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ShearsError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ShearsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            raise ShearsError(f"limit must be >= 1, got {self.limit}")
        if self.gym_size < 1:
            raise ShearsError(f"gym_size must be >= 1, got {self.gym_size}")
        if self.ppl_seqlen < 2 or (self.ppl_stride is not None and self.ppl_stride < 1):
            raise ShearsError("ppl_seqlen must be >= 2 and ppl_stride >= 1")
        if not self.tasks:
            raise ShearsError("no tasks given; e.g. --tasks gsm_symbolic,gsm_symbolic_mc")
        specs = [parse_task(t) for t in self.tasks]
        names = [s.name for s in specs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ShearsError(f"two tasks are both named {dup!r}; give one a 'name'")
        super().__post_init__()

    def task_specs(self) -> list[TaskSpec]:
        return [parse_task(t) for t in self.tasks]
