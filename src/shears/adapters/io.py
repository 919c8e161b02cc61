"""Save / load the elastic super-adapter in the PEFT layout (plus our search space).

A super-adapter folder holds:
- ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A.weight`` (r_max, in) and
  ``...lora_B.weight`` (out, r_max), the keys stock PEFT uses;
- ``adapter_config.json``: a real ``peft.LoraConfig`` at r = r_max (stock PEFT loads it as the
  maximal sub-adapter, since our scaling alpha / r_max is PEFT's);
- ``search_space.json``: the groups and their widths;
- ``shears_adapter.json``: r_max, alpha, dropout, sparse_adapter and the space config.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear, elastic_layers, inject_elastic_lora
from shears.adapters.search_space import SearchSpace, SpaceConfig
from shears.config import from_dict
from shears.errors import ShearsError

WEIGHTS = "adapter_model.safetensors"
META = "shears_adapter.json"
SPACE = "search_space.json"


def peft_key(module: str, which: str) -> str:
    """PEFT's saved key for ``lora_A`` / ``lora_B`` of ``module`` (adapter name stripped)."""
    return f"base_model.model.{module}.lora_{which}.weight"


def adapter_state_dict(
    layers: dict[str, ElasticLoRALinear], ranks: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """PEFT-keyed tensors, sliced to ``ranks[module]`` when given (contiguous CPU copies)."""
    out = {}
    for name, layer in layers.items():
        r = layer.r_max if ranks is None else ranks[name]
        out[peft_key(name, "A")] = layer.lora_A.detach()[:r].contiguous().cpu()
        out[peft_key(name, "B")] = layer.lora_B.detach()[:, :r].contiguous().cpu()
    return out


def save_super_adapter(
    model: nn.Module,
    space: SearchSpace,
    space_cfg: SpaceConfig,
    out_dir: str | Path,
    base_model: str | None = None,
) -> None:
    """Write the super-adapter of ``model`` into ``out_dir`` (caller makes it atomic)."""
    from peft import LoraConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers = elastic_layers(model)
    save_file(adapter_state_dict(layers), out / WEIGHTS)
    LoraConfig(
        r=space.r_max,
        lora_alpha=space_cfg.alpha,
        lora_dropout=space_cfg.dropout,
        target_modules=sorted(layers),
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    ).save_pretrained(out)
    space.save(out / SPACE)
    meta = {
        "r_max": space.r_max,
        "alpha": space_cfg.alpha,
        "dropout": space_cfg.dropout,
        "sparse_adapter": space_cfg.sparse_adapter,
        "space_config": asdict(space_cfg),
        "base_model": base_model,
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_super_adapter_meta(adapter_dir: str | Path) -> tuple[SpaceConfig, SearchSpace]:
    """Read the config and search space of a super-adapter folder (no weights)."""
    d = Path(adapter_dir)
    for f in (META, SPACE, WEIGHTS):
        if not (d / f).is_file():
            raise ShearsError(f"{str(d)!r} is not a Shears super-adapter folder: {f} is missing")
    meta = json.loads((d / META).read_text())
    return from_dict(SpaceConfig, meta["space_config"]), SearchSpace.load(d / SPACE)


def load_super_adapter(
    model: nn.Module, adapter_dir: str | Path, dropout: float | None = None
) -> tuple[dict[str, ElasticLoRALinear], SearchSpace]:
    """Inject elastic layers into ``model`` and load the super-adapter weights from ``adapter_dir``.

    Raises a ShearsError when the adapter does not fit the model (missing module, other shape).
    """
    space_cfg, space = read_super_adapter_meta(adapter_dir)
    names = dict(model.named_modules())
    for m, (i, o) in space.module_dims.items():
        if m not in names:
            raise ShearsError(
                f"adapter does not fit the model: module {m!r} is not in {type(model).__name__}"
            )
        from shears.models import in_out_features

        if tuple(in_out_features(names[m])) != (i, o):
            raise ShearsError(
                f"adapter does not fit the model: {m!r} is {in_out_features(names[m])} (in, out) in the "
                f"model but {(i, o)} in the adapter"
            )
    layers = inject_elastic_lora(
        model,
        space.modules,
        space.r_max,
        space_cfg.alpha,
        space_cfg.dropout if dropout is None else dropout,
        space_cfg.sparse_adapter,
    )
    state = load_file(str(Path(adapter_dir) / WEIGHTS))
    with torch.no_grad():
        for name, layer in layers.items():
            a, b = state[peft_key(name, "A")], state[peft_key(name, "B")]
            if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
                raise ShearsError(
                    f"adapter does not fit the model: {name!r} has A {tuple(a.shape)}, B {tuple(b.shape)}"
                )
            layer.lora_A.copy_(a)
            layer.lora_B.copy_(b)
    return layers, space
