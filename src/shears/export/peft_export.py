"""Write a sub-adapter of the elastic super-adapter as a plain, stock-PEFT LoRA adapter.

Each module keeps the first ``r_i`` rows of A and columns of B. PEFT scales a LoRA by
``lora_alpha / r``; Shears scales every sub-rank by ``alpha / r_max``. So each module gets
``rank_pattern[name] = r_i`` and ``alpha_pattern[name] = alpha * r_i / r_max``, which makes PEFT's
``alpha_i / r_i`` equal our fixed scaling and ``PeftModel.from_pretrained`` reproduce our logits.

Key semantics (peft 0.21, ``peft.utils.other.get_pattern_key``): a pattern key ``k`` applies to a
module named ``n`` when ``re.match(rf"(.*\\.)?({k})$", n)``, i.e. ``k`` is a regex that must match a
dotted suffix of ``n``. A full name like ``model.layers.1.mlp.up_proj`` therefore does *not* match
``model.layers.11.mlp.up_proj`` (the match must start at a dot boundary), but it would match a
nested ``x.model.layers.1.mlp.up_proj`` and its dots match any character. :func:`pattern_keys`
checks, with PEFT's own rule, that every module resolves to its own key and falls back to anchored,
escaped keys (``^model\\.layers\\.1\\.mlp\\.up_proj``) when plain names could collide.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.io import adapter_state_dict
from shears.adapters.search_space import Config, SearchSpace

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _peft_match(key: str, name: str) -> bool:
    """PEFT's rank/alpha pattern rule (``get_pattern_key``), reproduced to check our keys."""
    return re.match(rf"(.*\.)?({key})$", name) is not None


def pattern_keys(targets: Iterable[str], other_modules: Iterable[str] = ()) -> dict[str, str]:
    """``{module_name: pattern_key}`` such that, under PEFT's matching, each target resolves to its
    own key and no key reaches another module of the model (``other_modules``).

    Plain full names are used when that holds (readable configs); otherwise every key becomes
    ``^`` + ``re.escape(name)``, which matches exactly one name.
    """
    targets = list(targets)
    everything = list(dict.fromkeys(targets + list(other_modules)))
    plain_ok = all(
        not _peft_match(key, name) for key in targets for name in everything if name != key
    )
    if plain_ok:
        return {n: n for n in targets}
    return {n: "^" + re.escape(n) for n in targets}


def build_lora_config(
    space: SearchSpace,
    config: Config,
    alpha: float,
    dropout: float = 0.0,
    base_model: str | None = None,
    fan_in_fan_out: bool = False,
    other_modules: Iterable[str] = (),
) -> Any:
    """A ``peft.LoraConfig`` for the sub-adapter ``config`` of ``space``.

    ``r`` and ``lora_alpha`` are the super-adapter's ``r_max`` and ``alpha``; every module gets an
    explicit ``rank_pattern`` and ``alpha_pattern`` entry. ``other_modules``: the remaining module
    names of the model, to check the pattern keys cannot reach them.
    """
    from peft import LoraConfig

    ranks = space.module_ranks(space.validate(config))
    keys = pattern_keys(ranks, other_modules)
    exact = any(k != n for n, k in keys.items())
    target_modules: list[str] | str = sorted(ranks)
    if exact:  # a list entry also matches dotted suffixes: use an exact regex instead
        target_modules = "(" + "|".join(re.escape(n) for n in sorted(ranks)) + ")"
    r_max = space.r_max
    return LoraConfig(
        r=r_max,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        rank_pattern={keys[n]: r for n, r in ranks.items()},
        alpha_pattern={keys[n]: alpha * r / r_max for n, r in ranks.items()},
        fan_in_fan_out=fan_in_fan_out,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )


def export_peft_adapter(
    layers: dict[str, ElasticLoRALinear],
    space: SearchSpace,
    config: Config,
    out_dir: str | Path,
    base_model: str | None = None,
    other_modules: Iterable[str] = (),
    dropout: float | None = None,
) -> dict[str, Any]:
    """Write the sub-adapter ``config`` of ``layers`` into ``out_dir`` as a stock PEFT LoRA.

    Writes ``adapter_model.safetensors`` (A: (r_i, in), B: (out, r_i) per module, PEFT keys) and
    ``adapter_config.json``. The caller makes the folder atomic (``shears.utils.atomic_dir``).
    ``base_model`` goes to ``base_model_name_or_path``; ``other_modules``: every module name of
    the model (to prove the pattern keys reach only their module); ``dropout``: the recorded
    ``lora_dropout`` (default: the layers').
    Returns a summary: files, per-module ranks, adapter parameters and the LoRA config dict.
    """
    config = space.validate(config)
    ranks = space.module_ranks(config)
    missing = [m for m in ranks if m not in layers]
    if missing:
        from shears.errors import ShearsError

        raise ShearsError(
            f"module {missing[0]!r} of the search space has no elastic adapter in the model"
        )
    first = layers[next(iter(ranks))]
    alphas = {layers[m].alpha for m in ranks}
    r_maxes = {layers[m].r_max for m in ranks}
    if len(alphas) != 1 or r_maxes != {space.r_max}:
        raise ValueError(
            f"layers disagree with the space: alphas {sorted(alphas)}, r_max {sorted(r_maxes)} "
            f"vs space r_max {space.r_max}"
        )
    conv1d = {layers[m].transposed for m in ranks}
    lora_config = build_lora_config(
        space,
        config,
        alpha=first.alpha,
        dropout=getattr(first.lora_dropout, "p", 0.0) if dropout is None else dropout,
        base_model=base_model,
        fan_in_fan_out=conv1d == {True},
        other_modules=other_modules,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = adapter_state_dict({m: layers[m] for m in ranks}, ranks)
    save_file(state, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    lora_config.save_pretrained(str(out))
    return {
        "files": [ADAPTER_WEIGHTS, ADAPTER_CONFIG],
        "module_ranks": ranks,
        "adapter_parameters": sum(t.numel() for t in state.values()),
        "anchored_pattern_keys": any(k.startswith("^") for k in lora_config.rank_pattern),
        "lora_config": lora_config.to_dict(),
    }
