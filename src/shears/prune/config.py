"""``PruneConfig``: every setting of ``shears prune`` (CLI flags are generated from it)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shears.config import ADDED, field
from shears.errors import ShearsError
from shears.inputs import check_name_patterns
from shears.precision import check_precision
from shears.prune.masks import parse_pattern
from shears.stage import SeededConfig

METHODS = ("wanda", "magnitude", "sparsegpt")
PROFILES = ("uniform", "owl")
OFFLOADS = ("none", "cpu", "disk")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
DEFAULT_SPARSITY = 0.5


@dataclass
class PruneConfig(SeededConfig):
    """Stage 1 of Shears: sparsify a causal LM (Wanda by default)."""

    # shared fields (shears.stage), with this stage's defaults and help
    model: str = field(
        "smollm2-135m",
        help="model to prune: a named default (smollm2-135m), a local Hugging Face folder, "
        "a .gguf file or a hub id",
    )
    output_dir: str = field("outputs/pruned", help="folder for the pruned model and its report")
    device: str = field("auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    seed: int = field(0, help="seed for choosing the calibration windows")
    gguf_file: str | None = field(None, help="GGUF file name inside the --model folder")
    method: str = field("wanda", help=f"pruning method: {', '.join(METHODS)}")
    sparsity: float | None = field(
        None,
        help="fraction of weights zeroed in every output row, in [0, 1); not given: "
        f"{DEFAULT_SPARSITY} (unstructured) or N/M (N:M pattern, which fixes it)",
    )
    pattern: str = field(
        "unstructured",
        help="'unstructured' or N:M (e.g. 2:4: N zeros in every M consecutive inputs; "
        "sets the sparsity to N/M)",
    )
    sparsity_profile: str = field(
        "uniform",
        help="sparsity per decoder block: 'uniform' (every block at --sparsity) or 'owl' (Yin et "
        "al. 2023: blocks with more Wanda-score outliers keep more weights; the mean weighted by "
        "parameters stays --sparsity; unstructured only)",
        metadata=ADDED,
    )
    owl_m: float = field(
        5.0,
        help="OWL: a score is an outlier when above this many times its block's mean score",
        metadata=ADDED,
    )
    owl_lambda: float = field(
        0.08, help="OWL: block sparsities span --sparsity +- this, in [0, 0.5]", metadata=ADDED
    )
    targets: list[str] = field(
        [],
        help="name patterns of the linear layers to prune (suffix like q_proj, or re:<regex>); "
        "default: every linear layer in the decoder blocks",
    )
    ignore: list[str] = field([], help="name patterns of linear layers to leave dense")
    calibration: str = field(
        "default",
        help="calibration text: 'default' (offline text generated with reasoning-gym), a .txt "
        "file, a .json/.jsonl file (see --text-field), or a datasets name or local path (see "
        "--data-config, --data-split, --text-field)",
    )
    text_field: str = field("text", help="field holding the text in JSON records / dataset rows")
    data_config: str | None = field(
        None, help="datasets configuration name (e.g. 'en')", aliases=("dataset_config",)
    )
    data_split: str = field(
        "train", help="datasets split to read calibration text from", aliases=("dataset_split",)
    )
    nsamples: int = field(128, help="number of calibration windows")
    seqlen: int = field(
        512, help="tokens per calibration window, at most the model's maximum positions"
    )
    batch_size: int = field(
        8, help="calibration micro-batch (windows per forward pass); bounds activation memory"
    )
    offload_activations: bool = field(
        False, help="keep the calibration activations between blocks in CPU memory (for GPUs)"
    )
    precision: str = field(
        "auto",
        help="compute precision of the calibration forward passes: auto (bf16 autocast on a CPU "
        "with bf16 instructions, else the weights' dtype), fp32, bf16 (autocast); the weights, "
        "the float32 statistics, the masks and the saved model keep their dtype; --eval-ppl "
        "always runs in full precision so perplexities stay comparable",
        metadata=ADDED,
    )
    offload: str = field(
        "none",
        help="stream the decoder blocks for models larger than the device: none (the whole "
        "model on --device), cpu (weights in CPU memory, one block at a time on --device), disk "
        "(weights read block by block from the model folder's .safetensors, pruned blocks "
        "written to --offload-dir; needs a local Hugging Face folder, not GGUF, no --eval-ppl); "
        "with cpu, --eval-ppl runs on the CPU",
        metadata=ADDED,
    )
    offload_dir: str | None = field(
        None,
        help="--offload disk: folder for the pruned blocks until they are saved (a temporary "
        "folder is made inside it and removed after); not given: the output folder's parent",
        metadata=ADDED,
    )
    blocksize: int = field(128, help="SparseGPT: columns processed per block")
    percdamp: float = field(
        0.01, help="SparseGPT: dampening, fraction of the mean Hessian diagonal"
    )
    eval_ppl: bool = field(
        False,
        help="measure perplexity on held-out text before and after (in full precision, "
        "whatever --precision)",
    )
    ppl_source: str = field(
        "default",
        help="held-out text for --eval-ppl (same kinds as --calibration; 'default' is offline "
        "text disjoint from the default calibration text)",
    )
    ppl_split: str = field(
        "test", help="datasets split for --ppl-source (keep it apart from --data-split)"
    )
    ppl_seqlen: int = field(
        512, help="window length for --eval-ppl, at most the model's maximum positions"
    )
    ppl_tokens: int = field(16384, help="at most this many held-out tokens for --eval-ppl")
    trust_remote_code: bool = field(False, help="allow custom model code from the model folder")
    plot: bool = field(True, help="write sparsity_per_layer.png next to the report")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ShearsError(
                f"--method {self.method!r} is not known; allowed: {', '.join(METHODS)}"
            )
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ShearsError(f"--sparsity {self.sparsity} is outside [0, 1)")
        self.pattern = self.pattern.strip().lower()
        if self.pattern != "unstructured":
            m = _NM.match(self.pattern)
            if not m:
                raise ShearsError(
                    f"--pattern {self.pattern!r} is not 'unstructured' or N:M (e.g. 2:4)"
                )
            n, mm = int(m.group(1)), int(m.group(2))
            if not 0 < n < mm:
                raise ShearsError(
                    f"--pattern {self.pattern!r}: N:M needs 0 < N < M (e.g. 2:4, 4:8)"
                )
            self.pattern = f"{n}:{mm}"
            if self.sparsity is not None and abs(self.sparsity - n / mm) > 1e-6:
                raise ShearsError(
                    f"--sparsity {self.sparsity} conflicts with --pattern {self.pattern}, which "
                    f"zeroes exactly {n} of every {mm} weights (sparsity {n / mm:g}); drop "
                    f"--sparsity or give {n / mm:g}"
                )
            self.sparsity = n / mm
        elif self.sparsity is None:
            self.sparsity = DEFAULT_SPARSITY
        self._check_profile()
        for name in ("nsamples", "seqlen", "batch_size", "blocksize", "ppl_seqlen", "ppl_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise ShearsError(f"--{name.replace('_', '-')} {value} must be >= 1")
        if self.seed < 0:
            raise ShearsError(f"--seed {self.seed} must be >= 0")
        if not 0.0 < self.percdamp < 10.0:
            raise ShearsError(f"--percdamp {self.percdamp} must be in (0, 10)")
        if not self.text_field:
            raise ShearsError("--text-field must not be empty")
        check_precision(self.precision)
        self._check_offload()
        check_name_patterns(self.targets, "--targets")
        check_name_patterns(self.ignore, "--ignore")
        super().__post_init__()

    def _check_profile(self) -> None:
        if self.sparsity_profile not in PROFILES:
            raise ShearsError(
                f"--sparsity-profile {self.sparsity_profile!r} is not known; allowed: "
                f"{', '.join(PROFILES)}"
            )
        if self.sparsity_profile == "owl" and self.pattern != "unstructured":
            raise ShearsError(
                f"--sparsity-profile owl needs --pattern unstructured (N:M {self.pattern} fixes "
                "the sparsity of every block)"
            )
        if not self.owl_m > 0.0:
            raise ShearsError(f"--owl-m {self.owl_m} must be > 0")
        if not 0.0 <= self.owl_lambda <= 0.5:
            raise ShearsError(f"--owl-lambda {self.owl_lambda} must be in [0, 0.5]")

    def _check_offload(self) -> None:
        if self.offload not in OFFLOADS:
            raise ShearsError(
                f"--offload {self.offload!r} is not known; allowed: {', '.join(OFFLOADS)}"
            )
        if self.offload_dir is not None and self.offload != "disk":
            raise ShearsError(
                f"--offload-dir {self.offload_dir!r} applies only to --offload disk, not "
                f"--offload {self.offload}"
            )
        if self.offload == "disk" and self.eval_ppl:
            raise ShearsError(
                "--eval-ppl needs the whole model in memory; it is not available with --offload "
                "disk (use --offload cpu, or measure later with shears eval)"
            )

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(N, M)`` for an N:M pattern, else ``None``."""
        return parse_pattern(self.pattern)

    @property
    def needs_calibration(self) -> bool:
        """Magnitude pruning reads no data (unless OWL needs Wanda scores for its profile)."""
        return self.method != "magnitude" or self.sparsity_profile == "owl"
