"""The NLS search space: groups of adapter modules that share one elastic rank.

A *configuration* is a plain ``{group_name: rank}`` dict. The default grouping is the paper's: per
decoder block ``[q_proj, k_proj, v_proj]``, ``[up_proj]``, ``[down_proj]`` with widths
``[32, 24, 16]`` (first = r_max).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shears.adapters.config import ElasticLoraConfig, SpaceConfig, check_widths
from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.errors import ShearsError
from shears.inputs import read_json_file
from shears.models import find_decoder_blocks, find_targets, in_out_features, pattern_matches

Config = dict[str, int]

# The named sub-adapters and their aliases, declared once (sub-adapter choice, reference points).
NAMED_CONFIGS = {
    "heuristic": "heuristic",
    "max": "max",
    "maximal": "max",
    "min": "min",
    "minimal": "min",
}


@dataclass
class Group:
    """Modules that share one rank, and the ranks they may take (high to low)."""

    name: str
    modules: list[str]
    widths: list[int]


class SearchSpace:
    """Groups of adapter modules with their width choices; configs are ``{group: rank}`` dicts."""

    def __init__(self, groups: list[Group], module_dims: dict[str, tuple[int, int]]) -> None:
        if not groups:
            raise ShearsError("search space has no groups")
        self.groups = groups
        self.module_dims = module_dims  # name -> (in_features, out_features)
        self.by_name = {g.name: g for g in groups}
        if len(self.by_name) != len(groups):
            raise ShearsError("search space has duplicate group names")
        r_maxes = {g.widths[0] for g in groups}
        if len(r_maxes) != 1:
            raise ShearsError(
                f"all groups must share one r_max (first width), got {sorted(r_maxes)}"
            )

    @property
    def r_max(self) -> int:
        """The first (largest) width, shared by every group."""
        return self.groups[0].widths[0]

    # ------------------------------------------------------------------ build / io
    @classmethod
    def build(cls, model: nn.Module, adapter: ElasticLoraConfig, cfg: SpaceConfig) -> SearchSpace:
        """Find the target modules of ``adapter`` in ``model`` and group them per decoder block."""
        prefix, blocks = find_decoder_blocks(model)
        targets = find_targets(model, adapter.targets)
        groups: list[Group] = []
        for pattern_group in cfg.groups:
            for p in pattern_group:
                if not any(pattern_matches(p, n) for n in targets):
                    examples = sorted({n[len(prefix) + 1 :].split(".", 1)[-1] for n in targets})
                    raise ShearsError(
                        f"groups pattern {p!r} of group {pattern_group} matches no target "
                        f"module; targets {adapter.targets} give, per block: {', '.join(examples)} "
                        f"(e.g. {next(iter(targets))!r}): fix the pattern or leave it out of "
                        "--groups"
                    )
        for i in range(len(blocks)):
            block_prefix = f"{prefix}.{i}."
            in_block = [n for n in targets if n.startswith(block_prefix)]
            used: set[str] = set()
            for pattern_group in cfg.groups:
                members = [
                    n
                    for n in in_block
                    if n not in used and any(pattern_matches(p, n) for p in pattern_group)
                ]
                if members:
                    used.update(members)
                    label = "+".join(p.removeprefix("re:") for p in pattern_group)
                    groups.append(Group(f"{i}.{label}", members, list(cfg.widths)))
            for n in in_block:
                if n not in used:
                    groups.append(Group(f"{i}.{n[len(block_prefix) :]}", [n], list(cfg.widths)))
        dims = {n: in_out_features(m) for n, m in targets.items()}
        return cls(groups, dims)

    def to_dict(self) -> dict:
        return {
            "groups": [
                {"name": g.name, "modules": g.modules, "widths": g.widths} for g in self.groups
            ],
            "module_dims": {n: list(d) for n, d in self.module_dims.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        groups = [Group(g["name"], list(g["modules"]), list(g["widths"])) for g in data["groups"]]
        for g in groups:
            check_widths(g.widths, f"widths of group {g.name!r}")
        dims = {n: (int(d[0]), int(d[1])) for n, d in data["module_dims"].items()}
        return cls(groups, dims)

    def save(self, path: str | Path) -> None:
        from shears.utils import atomic_write_json

        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, what: str = "search space file") -> SearchSpace:
        """Read a ``search_space.json``; ``what`` names the flag or file in errors."""
        where = f"{what} {str(path)!r}"
        data = read_json_file(path, what, expect=dict)
        try:
            return cls.from_dict(data)
        except ShearsError as exc:
            raise ShearsError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ShearsError(
                f"{where} is not a search space (expected 'groups' of {{name, modules, widths}} "
                f"and 'module_dims'): {type(exc).__name__} {exc}"
            ) from exc

    # ------------------------------------------------------------------ configs
    @property
    def modules(self) -> list[str]:
        return [m for g in self.groups for m in g.modules]

    def maximal(self) -> Config:
        return {g.name: g.widths[0] for g in self.groups}

    def minimal(self) -> Config:
        return {g.name: g.widths[-1] for g in self.groups}

    def heuristic(self) -> Config:
        """The paper's zero-cost start: every group at its middle width ``widths[(n - 1) // 2]``."""
        return {g.name: g.widths[(len(g.widths) - 1) // 2] for g in self.groups}

    def named_config(self, name: str) -> Config:
        """``heuristic`` | ``max`` | ``min`` (or an alias of :data:`NAMED_CONFIGS`)."""
        if name not in NAMED_CONFIGS:
            raise ShearsError(
                f"config {name!r} is not known; allowed: heuristic, max, min, or a widths JSON"
            )
        make = {"heuristic": self.heuristic, "max": self.maximal, "min": self.minimal}
        return make[NAMED_CONFIGS[name]]()

    def validate(self, config: Config) -> Config:
        """Check that ``config`` names every group exactly and uses allowed widths."""
        if not isinstance(config, dict):
            raise ShearsError(
                f"a sub-adapter config must be a {{group: rank}} mapping, got {type(config).__name__}"
            )
        unknown = sorted(set(config) - set(self.by_name))
        if unknown:
            raise ShearsError(
                f"config names unknown group {unknown[0]!r}; groups look like {self.groups[0].name!r}"
            )
        missing = [g.name for g in self.groups if g.name not in config]
        if missing:
            raise ShearsError(f"config misses group {missing[0]!r} (and {len(missing) - 1} more)")
        for name, r in config.items():
            widths = self.by_name[name].widths
            if r not in widths:
                raise ShearsError(f"config gives group {name!r} rank {r!r}; allowed: {widths}")
        return {g.name: int(config[g.name]) for g in self.groups}

    def sample(self, seed: int, step: int, max_prob: float = 0.0) -> Config:
        """One uniform, independent width per group, a pure function of ``(seed, step)``: the
        same on every worker of a distributed run and after a resume. With ``max_prob`` > 0 the
        whole step is the maximal sub-adapter with that probability (the uniform draws are then
        the same as without it: the extra draw comes after them)."""
        gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63 - 1))
        config = {
            g.name: g.widths[int(torch.randint(len(g.widths), (1,), generator=gen))]
            for g in self.groups
        }
        if max_prob > 0 and float(torch.rand((), generator=gen)) < max_prob:
            return self.maximal()
        return config

    def adapter_parameters(self, config: Config) -> int:
        """Adapter parameters of a sub-adapter: sum of r * (in + out) over its modules."""
        total = 0
        for g in self.groups:
            r = config[g.name]
            for m in g.modules:
                i, o = self.module_dims[m]
                total += r * (i + o)
        return total

    def module_ranks(self, config: Config) -> dict[str, int]:
        """``{module_name: rank}`` for a config."""
        return {m: config[g.name] for g in self.groups for m in g.modules}

    # ------------------------------------------------------------------ model
    def apply(self, layers: dict[str, ElasticLoRALinear], config: Config) -> None:
        """Activate ``config`` on the elastic layers (a slice switch; nothing is copied)."""
        for m, r in self.module_ranks(config).items():
            if m not in layers:
                raise ShearsError(
                    f"module {m!r} of the search space has no elastic adapter in the model"
                )
            layers[m].active_rank = r
