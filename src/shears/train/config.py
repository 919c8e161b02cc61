"""``TrainConfig``: everything ``shears train`` needs, one documented field per flag."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from shears.adapters.config import ElasticLoraConfig, SpaceConfig, fit_r_max, split_sections
from shears.config import ADDED, field
from shears.data.prompts import PROMPT_STYLES
from shears.errors import ShearsError
from shears.stage import ResumableConfig, SeededConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
EXAMPLE_KEYS = ("instruction", "input", "output", "answer")


@dataclass
class TrainConfig(ResumableConfig, SeededConfig):
    """NLS training of an elastic LoRA super-adapter (Shears stage 2)."""

    # shared fields (shears.stage), with this stage's defaults and help
    model: str = field(
        "smollm2-135m",
        help="model to adapt: a `shears prune` output folder, any HF model folder, a .gguf file, "
        "a hub id or a named default (smollm2-135m)",
    )
    output_dir: str = field(
        "runs/train", help="folder for the super-adapter, configs, results and checkpoints"
    )
    dtype: str = field("auto", help="dtype to load the base model in (auto: bf16 on GPU, fp32 CPU)")
    device: str = field("auto", help="auto | cpu | cuda (distributed runs use their local GPU)")
    seed: int = field(
        0, help="seed for adapter init, data order, dropout and the sub-adapter sampled per step"
    )
    resume: bool = field(
        False,
        help="continue from the last complete checkpoint in output_dir (a damaged one is skipped "
        "with a warning; start fresh when there is none; a finished run is left as it is)",
    )
    data: str = field(
        "gym:gsm_symbolic",
        help="training data: gym:<reasoning-gym generator> (split by template), a JSON/JSONL file "
        "of instruction/input/output records (Alpaca, LLM-Adapters), or a `datasets` name or "
        "folder (prefix hf: to force)",
    )
    data_config: str | None = field(None, help="`datasets` config name (hub datasets only)")
    data_split: str = field(
        "train", help="split to train on (reasoning-gym: train/validation/test by template)"
    )
    data_fields: dict[str, str] = field(
        {},
        help="map our fields to the data's fields or columns, e.g. "
        "instruction=question,output=answer (JSON files and `datasets`)",
    )
    train_size: int = field(
        0,
        help="training examples: reasoning-gym generates this many (0 = 1000); files and "
        "datasets are cut to their first N (0 = all)",
    )
    data_seed: int = field(0, help="seed of the reasoning-gym generator")
    prompt_style: str = field(
        "alpaca", help=f"prompt template: {' | '.join(PROMPT_STYLES)} (chat = tokenizer template)"
    )
    cutoff_len: int = field(
        256,
        help="maximum tokens per example (prompt + answer + EOS), at most the model's maximum "
        "positions",
    )
    train_on_inputs: bool = field(
        True, help="loss on the whole prompt+answer (the paper); --no-train-on-inputs: answer only"
    )
    add_eos: bool = field(True, help="append the EOS token to every example when it fits")
    lr: float = field(3e-4, help="peak learning rate of AdamW")
    epochs: float = field(3.0, help="passes over the training data (ignored when max_steps > 0)")
    max_steps: int = field(0, help="optimizer steps to train; 0 = use epochs")
    batch_size: int = field(4, help="examples per device per micro-batch")
    grad_accum: int = field(
        4, help="micro-batches accumulated per optimizer step (effective batch = this x batch)"
    )
    warmup: float = field(
        0.0, help="warmup of the schedule: steps when >= 1, a fraction of all steps when < 1"
    )
    lr_scheduler: str = field("cosine", help=f"schedule: {' | '.join(SCHEDULERS)}")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    max_grad_norm: float = field(1.0, help="gradient clipping norm; 0 = no clipping")
    gradient_checkpointing: bool = field(
        False, help="recompute activations in backward (less memory, roughly a third slower)"
    )
    precision: str = field(
        "auto",
        help=f"{' | '.join(PRECISIONS)}; auto = bf16 (or fp16) mixed precision on GPU; on CPU "
        "bf16 autocast (fp32 master weights) where the shared precision policy allows it, else "
        "fp32",
    )
    save_steps: int = field(50, help="write a resumable checkpoint every N optimizer steps")
    save_total_limit: int = field(2, help="keep at most this many checkpoints")
    logging_steps: int = field(1, help="log the loss every N optimizer steps")
    num_workers: int = field(0, help="data-loader worker processes")
    distill: bool = field(
        False,
        help="distil from the dense teacher: loss (1-w)*CE + w*T^2*KL(teacher_T || student_T) "
        "over the CE tokens (the teacher: --teacher, else the model the prune folder came from)",
        metadata=ADDED,
    )
    teacher: str | None = field(
        None,
        help="the dense teacher of --distill (model folder, hub id or named default); default: "
        "the `model` of the prune output's prune_config.json",
        metadata=ADDED,
    )
    teacher_adapter: str | None = field(
        None,
        help="an adapter merged into the teacher (a fine-tuned dense teacher): a PEFT adapter "
        "folder, or a `shears train` output at its maximal sub-adapter (e.g. the dense LoRA "
        "that `shears run --baselines` trains)",
        metadata=ADDED,
    )
    distill_weight: float = field(
        0.5, help="w of --distill, the weight of the KD term (0 to 1)", metadata=ADDED
    )
    distill_temperature: float = field(
        2.0, help="T of --distill, the softmax temperature (> 0)", metadata=ADDED
    )
    distill_hidden: float = field(
        0.0,
        help="weight of the hidden-state loss of --distill: sum over decoder blocks of "
        "MSE(h_s, h_t) / MSE(h_t, 0) (0 = off)",
        metadata=ADDED,
    )
    nls_max_prob: float = field(
        0.0,
        help="probability that an optimizer step trains the maximal sub-adapter instead of a "
        "uniform sample of widths (0 = the paper's uniform sampling; 1 = plain LoRA at r_max)",
        metadata=ADDED,
    )
    adapter: ElasticLoraConfig = dataclasses.field(
        default_factory=ElasticLoraConfig,
        metadata={"help": "the elastic LoRA super-adapter (targets, r_max, alpha, dropout...)"},
    )
    space: SpaceConfig = dataclasses.field(
        default_factory=SpaceConfig,
        metadata={"help": "its search space: groups of modules sharing one rank, their widths"},
    )

    def __post_init__(self) -> None:
        from shears.config import from_dict

        if isinstance(self.adapter, dict):
            self.adapter = from_dict(ElasticLoraConfig, self.adapter, prefix="adapter.")
        if isinstance(self.space, dict):
            self.space = from_dict(SpaceConfig, self.space, prefix="space.")
        self.adapter = fit_r_max(self.adapter, self.space)
        if not self.model:
            raise ShearsError("model is empty; name a model folder, hub id or smollm2-135m")
        if not self.output_dir:
            raise ShearsError("output_dir is empty")
        if not self.data:
            raise ShearsError("data is empty; give gym:<generator>, a JSON/JSONL file or a dataset")
        if self.prompt_style not in PROMPT_STYLES:
            raise ShearsError(
                f"prompt_style {self.prompt_style!r} is not known; allowed: {', '.join(PROMPT_STYLES)}"
            )
        if self.cutoff_len < 2:
            raise ShearsError(f"cutoff_len must be >= 2 tokens, got {self.cutoff_len}")
        if not self.lr > 0:
            raise ShearsError(f"lr must be > 0, got {self.lr}")
        if self.max_steps < 0:
            raise ShearsError(f"max_steps must be >= 0 (0 = use epochs), got {self.max_steps}")
        if self.max_steps == 0 and not self.epochs > 0:
            raise ShearsError(f"epochs must be > 0 when max_steps is 0, got {self.epochs}")
        for name in ("batch_size", "grad_accum", "save_steps", "save_total_limit", "logging_steps"):
            if getattr(self, name) < 1:
                raise ShearsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.train_size < 0:
            raise ShearsError(f"train_size must be >= 0, got {self.train_size}")
        if self.num_workers < 0:
            raise ShearsError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.warmup < 0:
            raise ShearsError(f"warmup must be >= 0, got {self.warmup}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ShearsError("weight_decay and max_grad_norm must be >= 0")
        if self.precision not in PRECISIONS:
            raise ShearsError(
                f"precision {self.precision!r} is not known; allowed: {', '.join(PRECISIONS)}"
            )
        if self.lr_scheduler not in SCHEDULERS:
            raise ShearsError(
                f"lr_scheduler {self.lr_scheduler!r} is not known; allowed: {', '.join(SCHEDULERS)}"
            )
        self._check_distill()
        if not 0.0 <= self.nls_max_prob <= 1.0:
            raise ShearsError(f"--nls-max-prob must be in [0, 1], got {self.nls_max_prob}")
        bad = sorted(set(self.data_fields) - set(EXAMPLE_KEYS))
        if bad:
            raise ShearsError(
                f"data_fields key {bad[0]!r} is not known; allowed: {', '.join(EXAMPLE_KEYS)}"
            )
        super().__post_init__()

    def _check_distill(self) -> None:
        """One-line errors for bad distillation settings."""
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ShearsError(f"--distill-weight must be in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ShearsError(f"--distill-temperature must be > 0, got {self.distill_temperature}")
        if not self.distill_hidden >= 0:
            raise ShearsError(f"--distill-hidden must be >= 0 (0 = off), got {self.distill_hidden}")
        if self.teacher_adapter and not self.distill:
            raise ShearsError("--teacher-adapter needs --distill")

    @staticmethod
    def upgrade_layout(data: dict, prefix: str = "") -> dict:
        """Adapter settings written under ``space`` (before the adapter / space split) move to
        ``adapter``, with a deprecation WARNING (called by ``shears.config.from_dict``)."""
        return split_sections(data, prefix)


# Keys that may differ between a run and its resumption (they do not change the result).
RESUME_FREE_KEYS = ("overwrite", "resume", "num_workers", "save_steps", "save_total_limit")
