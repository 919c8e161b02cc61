"""Save / load the elastic super-adapter in the PEFT layout (plus our search space).

A super-adapter folder holds:
- ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A.weight`` (r_max, in) and
  ``...lora_B.weight`` (out, r_max), the keys stock PEFT uses;
- ``adapter_config.json``: a real ``peft.LoraConfig`` at r = r_max (stock PEFT loads it as the
  maximal sub-adapter, since our scaling alpha / r_max is PEFT's);
- ``search_space.json``: the groups and their widths;
- ``shears_adapter.json``: r_max, alpha, dropout, sparse_adapter, the space config and the base
  model, as given (``base_model``) and as an absolute path (``base_model_path``; ``None`` for a hub
  id or named default), so that the adapter works from any current folder.

Adapters load in fp32 (or wider, when saved so) whatever the base dtype: a bf16 base keeps a
full-precision adapter, as in training.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear, elastic_layers, inject_elastic_lora
from shears.adapters.search_space import SearchSpace, SpaceConfig
from shears.config import from_dict, local_spec_path, recorded_path, same_spec
from shears.errors import ShearsError
from shears.inputs import read_json_file

logger = logging.getLogger(__name__)

WEIGHTS = "adapter_model.safetensors"
META = "shears_adapter.json"
SPACE = "search_space.json"
PEFT_CONFIG = "adapter_config.json"


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
    base_path = local_spec_path(base_model)
    LoraConfig(
        r=space.r_max,
        lora_alpha=space_cfg.alpha,
        lora_dropout=space_cfg.dropout,
        target_modules=sorted(layers),
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_path or base_model,
    ).save_pretrained(out)
    space.save(out / SPACE)
    meta = {
        "r_max": space.r_max,
        "alpha": space_cfg.alpha,
        "dropout": space_cfg.dropout,
        "sparse_adapter": space_cfg.sparse_adapter,
        "space_config": asdict(space_cfg),
        "base_model": base_model,
        "base_model_path": base_path,
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_super_adapter_meta(adapter_dir: str | Path) -> tuple[SpaceConfig, SearchSpace]:
    """Read the config and search space of a super-adapter folder (no weights)."""
    d = Path(adapter_dir)
    for f in (META, SPACE, WEIGHTS):
        if not (d / f).is_file():
            raise ShearsError(f"{str(d)!r} is not a Shears super-adapter folder: {f} is missing")
    meta = read_adapter_meta(d)
    where = f"adapter metadata {str(d / META)!r}"
    if not isinstance(meta.get("space_config"), dict):
        raise ShearsError(f"{where} has no 'space_config' object: the adapter folder is damaged")
    try:
        space_cfg = from_dict(SpaceConfig, meta["space_config"], prefix="space_config.")
    except ShearsError as exc:
        raise ShearsError(f"{where}: {exc}") from exc
    if (d / PEFT_CONFIG).is_file():  # what stock PEFT reads; a damaged one is a damaged folder
        read_json_file(d / PEFT_CONFIG, "adapter config", expect=dict)
    return space_cfg, SearchSpace.load(d / SPACE, "adapter search space")


def warn_if_other_base(adapter_dir: str | Path, model: str | None, action: str) -> bool:
    """Log a WARNING when ``model`` (a base the user named) is not the base the super-adapter in
    ``adapter_dir`` records it was trained on; ``action`` says what runs (e.g. ``"searched"``).

    The weights fit any model of the same shapes (the dense base too) and silently give other
    results there. Returns whether it warned; nothing is recorded or ``model`` is None: no check.
    """
    if not model:
        return False
    meta = read_adapter_meta(adapter_dir)
    recorded = [r for r in (meta.get("base_model"), meta.get("base_model_path")) if r]
    if not recorded or any(same_spec(model, r) for r in recorded):
        return False
    logger.warning(
        "the adapter %s was trained on %r but is %s on %r: make sure that is the same (pruned) "
        "model (an adapter fits any model of the same shapes and gives other results there)",
        str(adapter_dir),
        recorded[0],
        action,
        model,
    )
    return True


def read_adapter_weights(adapter_dir: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``adapter_model.safetensors`` (ShearsError when damaged or unreadable)."""
    path = Path(adapter_dir) / WEIGHTS
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ShearsError(f"adapter weights {str(path)!r} are unreadable: {exc}") from exc


def read_adapter_meta(adapter_dir: str | Path) -> dict:
    """The ``shears_adapter.json`` of a super-adapter folder as a dict (ShearsError when it is
    missing, not UTF-8, not valid JSON or not an object)."""
    return read_json_file(Path(adapter_dir) / META, "adapter metadata", expect=dict)


def adapter_dtype(tensors: Iterable[torch.Tensor]) -> torch.dtype:
    """The dtype to hold saved adapter tensors in: fp32, or the saved dtype when it is wider."""
    dtype = torch.float32
    for t in tensors:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def load_super_adapter(
    model: nn.Module, adapter_dir: str | Path, dropout: float | None = None
) -> tuple[dict[str, ElasticLoRALinear], SearchSpace]:
    """Inject elastic layers into ``model`` and load the super-adapter weights from ``adapter_dir``.

    Raises a ShearsError when the adapter does not fit the model (missing module, other shape).
    The adapter parameters are fp32 (or the saved dtype when wider) whatever the base dtype, so a
    bf16 base does not round the adapter.
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
    state = read_adapter_weights(adapter_dir)
    layers = inject_elastic_lora(
        model,
        space.modules,
        space.r_max,
        space_cfg.alpha,
        space_cfg.dropout if dropout is None else dropout,
        space_cfg.sparse_adapter,
        dtype=adapter_dtype(state.values()),
    )
    with torch.no_grad():
        for name, layer in layers.items():
            missing = [k for k in (peft_key(name, "A"), peft_key(name, "B")) if k not in state]
            if missing:
                raise ShearsError(
                    f"adapter weights in {str(adapter_dir)!r} lack {missing[0]!r}: the weights "
                    f"and {SPACE} do not belong together"
                )
            a, b = state[peft_key(name, "A")], state[peft_key(name, "B")]
            if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
                raise ShearsError(
                    f"adapter does not fit the model: {name!r} has A {tuple(a.shape)}, B {tuple(b.shape)}"
                )
            layer.lora_A.copy_(a)
            layer.lora_B.copy_(b)
    return layers, space


def recorded_base_model(adapter_dir: str | Path) -> str | None:
    """The base model recorded in a super-adapter folder, ready to load from any current folder:
    its absolute path when that still exists, else the spec as given (``None`` if none)."""
    meta = read_adapter_meta(adapter_dir)
    return recorded_path(meta.get("base_model"), meta.get("base_model_path"))
