"""The adapter-size budget of a search (``--max-params``): which configs fit, the largest uniform
config that fits, and the one-line errors for a budget no config (or no reference point) meets.

``max_params`` 0 or ``None`` means no limit: every config fits.
"""

from __future__ import annotations

from shears.adapters.search_space import Config, SearchSpace
from shears.errors import ShearsError


def fits(space: SearchSpace, config: Config, max_params: int | None) -> bool:
    """Whether ``config`` has at most ``max_params`` adapter parameters (always, without a limit)."""
    return not max_params or space.adapter_parameters(config) <= max_params


def uniform_configs(space: SearchSpace) -> list[Config]:
    """The uniform configs, largest first: for each width ``w`` of the space (high to low), every
    group at its largest width ``<= w`` (at its smallest when it has none). The last one is the
    minimal config."""
    all_widths = sorted({w for g in space.groups for w in g.widths}, reverse=True)
    return [
        {g.name: next((x for x in g.widths if x <= w), g.widths[-1]) for g in space.groups}
        for w in all_widths
    ]


def check_max_params(space: SearchSpace, max_params: int | None) -> None:
    """A ShearsError when even the minimal config is over ``max_params`` (0 / None: no limit)."""
    if max_params is not None and max_params < 0:
        raise ShearsError(f"--max-params must be >= 0 (0 = no limit), got {max_params}")
    smallest = space.adapter_parameters(space.minimal())
    if max_params and smallest > max_params:
        raise ShearsError(
            f"--max-params {max_params} is below the smallest sub-adapter of the search space "
            f"(the min config has {smallest} adapter parameters); give --max-params >= "
            f"{smallest}, or 0 for no limit"
        )


def check_reference_fits(space: SearchSpace, name: str, max_params: int | None) -> None:
    """A ShearsError when the reference point ``name`` (heuristic / min / max) is over
    ``max_params``: a reference point is a fixed config, never projected."""
    size = space.adapter_parameters(space.named_config(name))
    if max_params and size > max_params:
        raise ShearsError(
            f"the {name} config has {size} adapter parameters, over --max-params {max_params}; "
            f"raise --max-params to >= {size}, or search (hill-climbing, random, evolutionary)"
        )


def project(space: SearchSpace, config: Config, max_params: int | None) -> Config:
    """``config`` if it fits ``max_params``, else the largest uniform config that does (see
    :func:`uniform_configs`; the minimal config must fit: :func:`check_max_params`)."""
    if fits(space, config, max_params):
        return config
    for c in uniform_configs(space):
        if fits(space, c, max_params):
            return c
    check_max_params(space, max_params)  # raises: not even the minimal config fits
    raise AssertionError("unreachable")
