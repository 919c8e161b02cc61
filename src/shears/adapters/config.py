"""The two configs of an elastic LoRA super-adapter, split as PEFT splits LoRA.

- :class:`ElasticLoraConfig`: what the adapter is (targets, rank ``r_max``, alpha, dropout, mask);
- :class:`SpaceConfig`: how its rank may shrink (groups of modules sharing a rank, their widths).

Both are saved as-is in ``shears_adapter.json`` and read back (:class:`shears.adapters.io.
SuperAdapter`). Before the split one ``space`` section held all the keys; :func:`split_sections`
reads that layout.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shears.config import field, load_config_file
from shears.errors import ShearsError
from shears.inputs import check_name_patterns

logger = logging.getLogger(__name__)


def check_widths(widths: list[int], what: str = "widths") -> None:
    """Widths must be non-empty, positive, unique and sorted high to low."""
    if not widths:
        raise ShearsError(f"{what} is empty; give ranks high to low, e.g. [32, 24, 16]")
    if any((not isinstance(w, int)) or w < 1 for w in widths):
        raise ShearsError(f"{what} {widths} must be positive integers")
    if list(widths) != sorted(set(widths), reverse=True):
        raise ShearsError(f"{what} {widths} must be unique and sorted high to low (first = r_max)")


@dataclass
class ElasticLoraConfig:
    """The elastic LoRA super-adapter: which modules get one, its rank and scaling."""

    targets: list[str] = field(
        ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
        help="module name patterns that get an adapter (suffix like q_proj, or re:<regex>)",
    )
    r_max: int = field(
        0, help="rank of the super-adapter; 0 = the first width. Widths must not exceed it"
    )
    alpha: float = field(64.0, help="LoRA alpha; scaling is alpha / r_max for every sub-rank")
    dropout: float = field(0.1, help="LoRA dropout on the adapter input")
    sparse_adapter: bool = field(
        False, help="multiply the delta by the base weight's non-zero mask (merge keeps sparsity)"
    )

    def __post_init__(self) -> None:
        if self.r_max < 0:
            raise ShearsError(f"r_max must be >= 0 (0 = first width), got {self.r_max}")
        if not self.targets:
            raise ShearsError("targets is empty; name at least one module pattern, e.g. q_proj")
        if self.alpha <= 0:
            raise ShearsError(f"alpha must be > 0, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ShearsError(f"dropout must be in [0, 1), got {self.dropout}")
        check_name_patterns(self.targets, "targets")


@dataclass
class SpaceConfig:
    """The NLS search space: groups of adapter modules sharing one rank, and the ranks."""

    groups: list[list[str]] = field(
        [["q_proj", "k_proj", "v_proj"], ["up_proj"], ["down_proj"]],
        help="per decoder block, lists of patterns whose modules share one rank; targets in no "
        "group get a group of their own; [] = one group per module. As a flag: ';' between "
        "groups, ',' inside one, e.g. 'q_proj,k_proj,v_proj;up_proj;down_proj' ('' = [])",
    )
    widths: list[int] = field(
        [32, 24, 16], help="rank choices of every group, high to low; first = r_max"
    )

    def __post_init__(self) -> None:
        check_widths(self.widths, "widths")
        for g in self.groups:
            if not g:
                raise ShearsError("a group in 'groups' is empty; give it at least one pattern")
        for g in self.groups:
            check_name_patterns(g, "groups")


def fit_r_max(adapter: ElasticLoraConfig, space: SpaceConfig) -> ElasticLoraConfig:
    """``adapter`` with ``r_max`` set to the first width (``0`` = not given), after checking that
    every width fits in it."""
    r_max, widths = adapter.r_max, space.widths
    if r_max:
        too_big = [w for w in widths if w > r_max]
        if too_big:
            raise ShearsError(
                f"widths {widths} hold {too_big[0]} > r_max {r_max}; every width must be <= r_max"
            )
        if widths[0] != r_max:
            raise ShearsError(
                f"the first width must equal r_max {r_max} (got widths {widths}); "
                f"prepend {r_max} or set r_max to {widths[0]}"
            )
    return adapter if r_max == widths[0] else dataclasses.replace(adapter, r_max=widths[0])


# ---------------------------------------------------------------------------- layouts

ADAPTER_KEYS = tuple(f.name for f in dataclasses.fields(ElasticLoraConfig))
SPACE_KEYS = tuple(f.name for f in dataclasses.fields(SpaceConfig))


def split_sections(data: dict[str, Any], where: str = "", *, warn: bool = True) -> dict[str, Any]:
    """``data`` with the adapter keys of its ``space`` section moved to ``adapter``.

    Before the split, ``space`` held every key (``space: {alpha: 32, widths: [16, 8]}``); now
    ``adapter: {alpha: 32}`` and ``space: {widths: [16, 8]}``. A moved key overrides the same key
    under ``adapter`` (it is the later, user-given layer over a packaged default); with ``warn``
    each one logs a deprecation WARNING (``where``: the section's name, e.g. ``train.``).
    """
    space, adapter = data.get("space"), data.get("adapter") or {}
    if not isinstance(space, dict) or not isinstance(adapter, dict):
        return data  # from_dict names the section that is not a mapping
    moved = {k: space[k] for k in ADAPTER_KEYS if k in space}
    if not moved:
        return data
    if warn:
        for k in moved:
            logger.warning(
                "config key %r is deprecated: write it as %r",
                f"{where}space.{k}",
                f"{where}adapter.{k}",
            )
    rest = {k: v for k, v in space.items() if k not in moved}
    return {**data, "adapter": {**adapter, **moved}, "space": rest}


def read_adapter_file(path: str | Path) -> dict[str, Any]:
    """A ``--space-config`` file as ``{"adapter": {...}, "space": {...}}``: YAML or JSON holding
    ``adapter:`` / ``space:`` sections, or the keys of both configs at the top level or under one
    ``space:`` key (the layout before the split)."""
    data = load_config_file(path)
    sections = data if set(data) <= {"adapter", "space"} else {"space": data}
    for name, value in sections.items():
        if not isinstance(value, dict):
            raise ShearsError(f"{str(path)!r}: {name!r} must be a mapping of settings")
    sections = split_sections(sections, warn=False)
    for cls, name in ((ElasticLoraConfig, "adapter"), (SpaceConfig, "space")):
        unknown = sorted(set(sections.get(name, {})) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            key = f"{name}.{unknown[0]}"
            raise ShearsError(
                f"unknown config key {key!r} in {str(path)!r}; allowed: adapter keys "
                f"{', '.join(ADAPTER_KEYS)}; space keys {', '.join(SPACE_KEYS)}"
            )
    return sections
