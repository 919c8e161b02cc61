"""``SearchConfig``: everything ``shears search`` needs, one documented field per flag."""

from __future__ import annotations

from dataclasses import dataclass, fields

from shears.adapters.search_space import NAMED_CONFIGS
from shears.config import ADDED, field
from shears.data.prompts import PROMPT_STYLES
from shears.errors import ShearsError
from shears.precision import PRECISIONS, check_precision
from shears.stage import ResumableConfig, SeededConfig

ALGORITHMS = ("heuristic", "hill-climbing", "random", "evolutionary", "min", "max")
ALGORITHM_ALIASES = {
    "hill_climbing": "hill-climbing",
    "hillclimbing": "hill-climbing",
    "hc": "hill-climbing",
    "evo": "evolutionary",
    "nsga2": "evolutionary",
    "nsga-ii": "evolutionary",
    **{alias: name for alias, name in NAMED_CONFIGS.items() if alias != name},
}
OBJECTIVES = ("loss", "math", "choice")
# the fields every validation example must have for each objective
OBJECTIVE_FIELDS = {"loss": ("output",), "math": ("answer",), "choice": ("choices",)}
CHOICE_METRICS = ("acc", "acc_norm", "acc_bytes")


def algorithm_name(name: str) -> str:
    """The algorithm ``name`` (or an alias of it) names; a ShearsError for an unknown one."""
    name = ALGORITHM_ALIASES.get(name, name)
    if name not in ALGORITHMS:
        raise ShearsError(f"algorithm {name!r} is not known; allowed: {', '.join(ALGORITHMS)}")
    return name


@dataclass
class AlgorithmConfig:
    """How the search walks: the part of :class:`SearchConfig` that
    :func:`~shears.search.algorithms.run_algorithm` reads (:meth:`of` takes it whole). The
    defaults are the library's: no screening; ``mutation_prob`` 0 means 1 / number of groups."""

    algorithm: str = "hill-climbing"
    max_turns: int = 10
    patience: int = 1
    screen_top_k: int = 0
    population: int = 16
    mutation_prob: float = 0.0
    two_objectives: bool = False
    seed: int = 0
    score_best: bool = True

    def __post_init__(self) -> None:
        self.algorithm = algorithm_name(self.algorithm)

    @classmethod
    def of(cls, cfg: SearchConfig) -> AlgorithmConfig:
        """The algorithm settings of ``cfg`` (the fields of the same names)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass
class SearchConfig(ResumableConfig, SeededConfig):
    """Sub-adapter search over a trained super-adapter (Shears stage 3)."""

    # shared fields (shears.stage), with this stage's defaults and help
    model: str | None = field(
        None,
        help="base model the adapter was trained on; default: `model` of the adapter's "
        "train_config.json, else smollm2-135m",
    )
    output_dir: str = field(
        "runs/search", help="folder for search_results.json, the log and the plots"
    )
    dtype: str = field("auto", help="model dtype (auto: bf16 on GPU, fp32 on CPU)")
    device: str = field("auto", help="auto | cpu | cuda | cuda:N")
    overwrite: bool = field(False, help="replace the results of an earlier search in output_dir")
    resume: bool = field(
        False,
        help="continue a killed search from output_dir/search_log.jsonl without re-evaluating "
        "what it logged (same settings required)",
    )
    seed: int = field(0, help="seed of random and evolutionary search")
    adapter: str = field("", help="super-adapter folder: the output of `shears train`")
    algorithm: str = field(
        "hill-climbing",
        help=f"{' | '.join(ALGORITHMS)}; heuristic/min/max are reference points (no search)",
    )
    objective: str = field(
        "loss",
        help="loss: mean NLL of the validation answer tokens (fast; lower is better) | math: "
        "greedy-generation accuracy | choice: multiple-choice log-likelihood accuracy",
    )
    budget: int = field(100, help="most distinct configurations evaluated (the search stops there)")
    max_turns: int = field(10, help="hill-climbing turns / evolutionary generations at most")
    patience: int = field(
        1,
        help="hill-climbing stops after this many turns in a row without a new best "
        "(0 = never: always move to the best neighbour, as the paper's notebook)",
    )
    screen_top_k: int = field(
        16,
        help="hill-climbing: evaluate exactly only the K neighbours with the best first-order "
        "loss estimates (loss objective); 0 = evaluate every neighbour (exhaustive)",
    )
    reuse_prefix: bool = field(
        True,
        help="loss objective: reuse the activations of the decoder blocks below the first "
        "changed group (exact; --no-reuse-prefix to measure)",
    )
    gather_logits: bool = field(
        True, help="loss objective: run the output head only at answer positions (exact)"
    )
    start: str = field(
        "heuristic",
        help="hill-climbing start: heuristic | max | min | a JSON file of {group: rank} (or a "
        "search result holding one, or its folder) | inline JSON",
    )
    population: int = field(16, help="evolutionary: population size (mu = lambda)")
    mutation_prob: float = field(
        0.0, help="evolutionary: per-group mutation probability; 0 = 1 / number of groups"
    )
    two_objectives: bool = field(
        False,
        help="evolutionary: NSGA-II on (objective, adapter parameters) instead of the objective alone",
    )
    space: str | None = field(
        None,
        help="search space JSON (groups and widths) to search instead of the adapter's own; "
        "must fit the adapter",
    )
    data: str | None = field(
        None,
        help="validation data: default the training data of train_config.json (its validation "
        "split); or gym:<generator>, a JSON/JSONL file, a `datasets` name",
    )
    data_split: str = field(
        "validation", help="split of --data to score on (never test: search must not see it)"
    )
    val_size: int = field(32, help="validation examples to score every configuration on")
    data_seed: int | None = field(None, help="reasoning-gym seed; default: the training one")
    prompt_style: str | None = field(
        None, help=f"{' | '.join(PROMPT_STYLES)}; default: the training one (train_config.json)"
    )
    cutoff_len: int | None = field(
        None,
        help="max tokens per example (at most the model's maximum positions); default: the "
        "training one",
    )
    batch_size: int = field(8, help="validation examples per forward pass")
    max_new_tokens: int = field(
        256,
        help="math objective: tokens generated per answer; must be below the model's maximum "
        "positions, and a prompt longer than the rest is cut from the left (a warning counts "
        "them)",
    )
    choice_metric: str = field(
        "acc", help=f"choice objective: {' | '.join(CHOICE_METRICS)} (as lm-evaluation-harness)"
    )
    score_best: bool = field(
        True, help="evaluate the chosen configuration when the algorithm did not (heuristic)"
    )
    plots: bool = field(True, help="write search_progress.png and search_ranks.png")
    max_params: int = field(
        0,
        help="search only sub-adapters with at most this many adapter parameters (0 = no "
        "limit); hill-climbing starts from the largest uniform config within it when its start "
        "is over it; heuristic/min/max over it are an error",
        metadata=ADDED,
    )
    precision: str = field(
        "auto",
        help=f"compute precision of the candidates' forward passes: {' | '.join(PRECISIONS)} "
        "(as `shears eval --precision`)",
        metadata=ADDED,
    )

    def __post_init__(self) -> None:
        self.algorithm = algorithm_name(self.algorithm)
        if self.objective not in OBJECTIVES:
            raise ShearsError(
                f"objective {self.objective!r} is not known; allowed: {', '.join(OBJECTIVES)}"
            )
        if self.budget < 1:
            raise ShearsError(f"budget must be >= 1 evaluation, got {self.budget}")
        for name in ("max_turns", "val_size", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ShearsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 0:
            raise ShearsError(f"patience must be >= 0 (0 = never stop early), got {self.patience}")
        if self.screen_top_k < 0:
            raise ShearsError(
                f"screen_top_k must be >= 0 (0 = exhaustive), got {self.screen_top_k}"
            )
        if self.max_params < 0:
            raise ShearsError(f"--max-params must be >= 0 (0 = no limit), got {self.max_params}")
        if self.population < 2:
            raise ShearsError(f"population must be >= 2, got {self.population}")
        if not 0 <= self.mutation_prob <= 1:
            raise ShearsError(f"mutation_prob must be in [0, 1], got {self.mutation_prob}")
        if self.data_split == "test":
            raise ShearsError(
                "data_split 'test' is not allowed: the search chooses on validation data, so that "
                "the test split stays unseen; use validation"
            )
        if self.prompt_style is not None and self.prompt_style not in PROMPT_STYLES:
            raise ShearsError(
                f"prompt_style {self.prompt_style!r} is not known; allowed: {', '.join(PROMPT_STYLES)}"
            )
        if self.cutoff_len is not None and self.cutoff_len < 2:
            raise ShearsError(f"cutoff_len must be >= 2 tokens, got {self.cutoff_len}")
        check_precision(self.precision)
        if self.choice_metric not in CHOICE_METRICS:
            raise ShearsError(
                f"choice_metric {self.choice_metric!r} is not known; allowed: {', '.join(CHOICE_METRICS)}"
            )
        if not self.adapter:
            raise ShearsError("adapter is empty; give the super-adapter folder of `shears train`")
        if not self.output_dir:
            raise ShearsError("output_dir is empty")
        super().__post_init__()
