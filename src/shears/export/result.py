"""``ExportResult``: what ``export_results.json`` holds (and what the model card shows), typed.

Each section is a small dataclass; :meth:`ExportResult.to_dict` is the file's content (its keys
in file order); :mod:`shears.export.report` renders the same object as the model card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from shears.adapters.io import SuperAdapter
from shears.adapters.search_space import Config
from shears.export.merge import MergeStats


@dataclass(frozen=True)
class BaseModelInfo:
    """The (sparse) base the sub-adapter was exported for."""

    spec: str  # as given or recorded
    path: str  # where it was loaded from (absolute for a local folder)
    dtype: str
    block_linear_sparsity: float  # zeros of the linear layers in the decoder blocks
    target_sparsity: float  # zeros of the adapter's target layers


@dataclass(frozen=True)
class AdapterInfo:
    """The super-adapter the sub-adapter was taken from."""

    path: str
    alpha: float
    dropout: float
    sparse_adapter: bool  # mask-aware (SparsePEFT)


@dataclass(frozen=True)
class SpaceInfo:
    """The super-adapter's search space, in numbers."""

    r_max: int
    groups: int
    modules: int
    targets: list[str]
    widths: list[int]  # high to low
    grouping: str  # the groups of one decoder block, e.g. "[q_proj, k_proj, v_proj] / [up_proj]"

    @classmethod
    def of(cls, saved: SuperAdapter) -> SpaceInfo:
        space = saved.space
        return cls(
            r_max=space.r_max,
            groups=len(space.groups),
            modules=len(space.modules),
            targets=list(saved.config.targets),
            widths=sorted({w for g in space.groups for w in g.widths}, reverse=True),
            grouping=" / ".join("[" + ", ".join(g) + "]" for g in saved.space_config.groups)
            or "one group per module",
        )


@dataclass(frozen=True)
class ExportedSubAdapter:
    """The chosen sub-adapter: where it came from, its ranks and how PEFT keys address them."""

    source: str  # heuristic | max | min | search | file | inline
    details: dict[str, Any]
    config: Config
    width_histogram: dict[int, int]  # width -> groups at that width, high to low
    rank_table: str  # Markdown, for the model card only (not in export_results.json)
    anchored_pattern_keys: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "rank_table"}


@dataclass(frozen=True)
class ShownEvaluation:
    """The evaluation results shown in the model card: their file and its scalars."""

    file: str
    metrics: dict[str, Any]  # "a.b": scalar


@dataclass
class Verification:
    """What the logit checks against the in-memory sub-adapter measured; a check that did not
    run leaves its field ``None`` (and out of :meth:`to_dict`)."""

    probe_tokens: list[int]  # (batch, seq)
    tolerance: float
    lines: list[str] = field(default_factory=list)  # one sentence per check, for the card
    stock_peft_max_abs_logit_diff: float | None = None
    stock_peft_vs_unmasked_max_abs_logit_diff: float | None = None
    merged_max_abs_logit_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class ExportResult:
    """What ``shears export`` did (``export_results.json``: :meth:`to_dict`)."""

    name: str
    output_dir: str
    files: list[str]
    versions: dict[str, str]
    base_model: BaseModelInfo
    adapter: AdapterInfo
    search_space: SpaceInfo
    sub_adapter: ExportedSubAdapter
    parameters: dict[str, Any]  # shears.export.report.parameter_summary
    evaluation: ShownEvaluation | None
    verification: Verification | None  # None without --verify
    merge: MergeStats | None  # None without --merge
    time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    """A section as JSON-ready data (a merge also gets its one-line summary)."""
    if isinstance(value, MergeStats):
        return value.to_dict() | {"summary": value.summary()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if is_dataclass(value):
        return asdict(value)
    return value
