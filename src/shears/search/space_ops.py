"""Pure operations on sub-adapter configurations: canonical keys, one-step neighbours, sampling,
and which decoder block each group lives in."""

from __future__ import annotations

import random
import re

from shears.adapters.search_space import Config, SearchSpace


def config_key(space: SearchSpace, config: Config) -> str:
    """Canonical, order-independent key of a config: its ranks in the space's group order."""
    return ",".join(str(int(config[g.name])) for g in space.groups)


def neighbours(space: SearchSpace, config: Config) -> list[tuple[str, int, Config]]:
    """Every config that moves exactly one group exactly one step along its width list.

    Returns ``(group, new_rank, config)`` in group order, the larger width (step up) first.
    """
    out = []
    for g in space.groups:
        i = g.widths.index(config[g.name])
        for j in (i - 1, i + 1):  # widths are high to low: i - 1 is one step up
            if 0 <= j < len(g.widths):
                out.append((g.name, g.widths[j], {**config, g.name: g.widths[j]}))
    return out


def random_config(space: SearchSpace, rng: random.Random) -> Config:
    """One uniform, independent width per group."""
    return {g.name: rng.choice(g.widths) for g in space.groups}


def space_size(space: SearchSpace) -> int:
    n = 1
    for g in space.groups:
        n *= len(g.widths)
    return n


def group_blocks(space: SearchSpace, block_prefix: str, n_blocks: int) -> dict[str, int]:
    """``{group: index of the first decoder block holding one of its modules}``.

    A module outside ``<block_prefix>.<i>.`` maps to block 0 (conservative: everything after it
    is recomputed).
    """
    pat = re.compile(re.escape(block_prefix) + r"\.(\d+)\.")
    out = {}
    for g in space.groups:
        idx = []
        for m in g.modules:
            hit = pat.match(m)
            idx.append(int(hit.group(1)) if hit and int(hit.group(1)) < n_blocks else 0)
        out[g.name] = min(idx)
    return out


def group_layer_label(name: str) -> tuple[int | None, str]:
    """Split a group name ``"<block>.<label>"`` (as SearchSpace.build names them) for plots."""
    head, _, tail = name.partition(".")
    if head.isdigit() and tail:
        return int(head), tail
    return None, name
