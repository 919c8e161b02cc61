"""The super-adapter folder, in the PEFT layout plus its configs: :class:`SuperAdapter`.

A super-adapter folder holds:
- ``adapter_model.safetensors``: ``base_model.model.<module>.lora_A.weight`` (r_max, in) and
  ``...lora_B.weight`` (out, r_max), the keys stock PEFT uses;
- ``adapter_config.json``: a real ``peft.LoraConfig`` at r = r_max (stock PEFT loads it as the
  maximal sub-adapter, since our scaling alpha / r_max is PEFT's);
- ``search_space.json``: the groups built from the space config (modules, widths, shapes);
- ``shears_adapter.json``: the two configs as they are (``adapter``: :class:`ElasticLoraConfig`,
  ``space``: :class:`SpaceConfig`) and the base model, as given (``base_model``) and as an
  absolute path (``base_model_path``; ``None`` for a hub id or named default), so that the adapter
  works from any current folder. Folders written before the split hold both configs as one
  ``space_config`` (and r_max, alpha, dropout, sparse_adapter again at the top); they read the
  same.

Adapters load in fp32 (or wider, when saved so) whatever the base dtype: a bf16 base keeps a
full-precision adapter, as in training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from shears.adapters.config import ElasticLoraConfig, SpaceConfig, fit_r_max, split_sections
from shears.adapters.elastic_lora import ElasticLoRALinear, inject_elastic_lora
from shears.adapters.search_space import SearchSpace
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


@dataclass
class SuperAdapter:
    """An elastic LoRA super-adapter: its two configs, the search space built from them, the
    base it was trained on and, once injected into a model, its layers.

    As PEFT: :meth:`create` injects fresh layers (``get_peft_model``), :meth:`save` writes the
    folder with the configs as-is (``save_pretrained``), :meth:`read` reads them back without a
    model and :meth:`load` injects and loads the weights (``from_pretrained``).
    """

    config: ElasticLoraConfig
    space_config: SpaceConfig
    space: SearchSpace
    base_model: str | None = None  # as given
    base_model_path: str | None = None  # absolute; None for a hub id or a named default
    layers: dict[str, ElasticLoRALinear] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def base_spec(self) -> str | None:
        """The base to load from any current folder: its absolute path when that still exists,
        else the spec as given (``None`` if none is recorded)."""
        return recorded_path(self.base_model, self.base_model_path)

    @classmethod
    def create(
        cls,
        model: nn.Module,
        config: ElasticLoraConfig,
        space_config: SpaceConfig,
        *,
        base_model: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> SuperAdapter:
        """Inject fresh elastic layers (A random, B zero) into the targets of ``model``."""
        config = fit_r_max(config, space_config)
        space = SearchSpace.build(model, config, space_config)
        adapter = cls(config, space_config, space, base_model, local_spec_path(base_model))
        adapter.layers = adapter._inject(model, config.dropout, dtype)
        return adapter

    def _inject(
        self, model: nn.Module, dropout: float, dtype: torch.dtype | None
    ) -> dict[str, ElasticLoRALinear]:
        c = self.config
        return inject_elastic_lora(
            model, self.space.modules, c.r_max, c.alpha, dropout, c.sparse_adapter, dtype=dtype
        )

    def save(self, out_dir: str | Path) -> None:
        """Write the folder: weights at r_max, PEFT's ``adapter_config.json``, the search space
        and ``shears_adapter.json`` (the configs as-is). The caller makes it atomic."""
        from peft import LoraConfig

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(adapter_state_dict(self.layers), out / WEIGHTS)
        LoraConfig(
            r=self.config.r_max,
            lora_alpha=self.config.alpha,
            lora_dropout=self.config.dropout,
            target_modules=sorted(self.layers),
            task_type="CAUSAL_LM",
            base_model_name_or_path=self.base_model_path or self.base_model,
        ).save_pretrained(out)
        self.space.save(out / SPACE)
        meta = {
            "adapter": asdict(self.config),
            "space": asdict(self.space_config),
            "base_model": self.base_model,
            "base_model_path": self.base_model_path,
        }
        (out / META).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def read(cls, adapter_dir: str | Path) -> SuperAdapter:
        """The configs, search space and base of a super-adapter folder (no weights, no model)."""
        d = Path(adapter_dir)
        for f in (META, SPACE, WEIGHTS):
            if not (d / f).is_file():
                raise ShearsError(
                    f"{str(d)!r} is not a Shears super-adapter folder: {f} is missing"
                )
        meta = _read_meta(d)
        config, space_config = _configs(meta, f"adapter metadata {str(d / META)!r}")
        if (d / PEFT_CONFIG).is_file():  # what stock PEFT reads; a damaged one is a damaged folder
            read_json_file(d / PEFT_CONFIG, "adapter config", expect=dict)
        space = SearchSpace.load(d / SPACE, "adapter search space")
        if space.r_max != config.r_max:
            raise ShearsError(
                f"{str(d)!r}: {SPACE} has r_max {space.r_max} but {META} {config.r_max}: the "
                "adapter folder is damaged"
            )
        return cls(config, space_config, space, meta.get("base_model"), meta.get("base_model_path"))

    @classmethod
    def load(
        cls, model: nn.Module, adapter_dir: str | Path, dropout: float | None = None
    ) -> SuperAdapter:
        """Inject elastic layers into ``model`` and load the weights of ``adapter_dir``.

        ``dropout`` overrides the recorded one in the layers (0.0 to evaluate). Raises a
        ShearsError when the adapter does not fit the model (missing module, other shape). The
        adapter is fp32 (or the saved dtype when wider) whatever the base dtype, so a bf16 base
        does not round it.
        """
        adapter = cls.read(adapter_dir)
        adapter._check_fits(model)
        state = read_adapter_weights(adapter_dir)
        rate = adapter.config.dropout if dropout is None else dropout
        adapter.layers = adapter._inject(model, rate, adapter_dtype(state.values()))
        adapter._copy_weights(state, adapter_dir)
        return adapter

    def load_weights(self, adapter_dir: str | Path) -> None:
        """Copy the weights of ``adapter_dir`` into the injected layers."""
        self._copy_weights(read_adapter_weights(adapter_dir), adapter_dir)

    def _check_fits(self, model: nn.Module) -> None:
        from shears.models import in_out_features

        names = dict(model.named_modules())
        for m, (i, o) in self.space.module_dims.items():
            if m not in names:
                raise ShearsError(
                    f"adapter does not fit the model: module {m!r} is not in {type(model).__name__}"
                )
            if tuple(in_out_features(names[m])) != (i, o):
                raise ShearsError(
                    f"adapter does not fit the model: {m!r} is {in_out_features(names[m])} (in, "
                    f"out) in the model but {(i, o)} in the adapter"
                )

    @torch.no_grad()
    def _copy_weights(self, state: dict[str, torch.Tensor], adapter_dir: str | Path) -> None:
        for name, layer in self.layers.items():
            missing = [k for k in (peft_key(name, "A"), peft_key(name, "B")) if k not in state]
            if missing:
                raise ShearsError(
                    f"adapter weights in {str(adapter_dir)!r} lack {missing[0]!r}: the weights "
                    f"and {SPACE} do not belong together"
                )
            a, b = state[peft_key(name, "A")], state[peft_key(name, "B")]
            if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape:
                raise ShearsError(
                    f"adapter does not fit the model: {name!r} has A {tuple(a.shape)}, "
                    f"B {tuple(b.shape)}"
                )
            layer.lora_A.copy_(a)
            layer.lora_B.copy_(b)


def _configs(meta: dict, where: str) -> tuple[ElasticLoraConfig, SpaceConfig]:
    """The two configs of a ``shears_adapter.json``; a folder written before the split holds
    them as one ``space_config`` object (and r_max, alpha... again at the top: not read)."""
    if "adapter" in meta or "space" in meta:
        sections, prefixes = meta, ("adapter.", "space.")
        for name in ("adapter", "space"):
            if not isinstance(meta.get(name), dict):
                raise ShearsError(f"{where} has no {name!r} object: the adapter folder is damaged")
    else:
        if not isinstance(meta.get("space_config"), dict):
            raise ShearsError(
                f"{where} has no 'space_config' object: the adapter folder is damaged"
            )
        sections = split_sections({"space": meta["space_config"]}, warn=False)
        prefixes = ("space_config.", "space_config.")
    try:
        config = from_dict(ElasticLoraConfig, sections.get("adapter", {}), prefix=prefixes[0])
        space_config = from_dict(SpaceConfig, sections["space"], prefix=prefixes[1])
        return fit_r_max(config, space_config), space_config
    except ShearsError as exc:
        raise ShearsError(f"{where}: {exc}") from exc


def adapter_kind(path: str | Path) -> str:
    """``super`` (Shears super-adapter folder) or ``peft`` (stock PEFT adapter folder, its
    ``adapter_config.json`` a JSON object); one clear error for anything else."""
    d = Path(path)
    if not d.is_dir():
        raise ShearsError(f"adapter folder {str(path)!r} does not exist")
    if (d / META).is_file():
        return "super"
    if (d / "adapter_config.json").is_file():
        read_json_file(d / "adapter_config.json", "PEFT adapter config", expect=dict)
        return "peft"
    raise ShearsError(
        f"{str(path)!r} is neither a Shears super-adapter ({META}) nor a PEFT adapter "
        "(adapter_config.json)"
    )


def warn_if_other_base(adapter_dir: str | Path, model: str | None, action: str) -> bool:
    """Log a WARNING when ``model`` (a base the user named) is not the base the super-adapter in
    ``adapter_dir`` records it was trained on; ``action`` says what runs (e.g. ``"searched"``).

    The weights fit any model of the same shapes (the dense base too) and silently give other
    results there. Returns whether it warned; nothing is recorded or ``model`` is None: no check.
    """
    if not model:
        return False
    meta = _read_meta(adapter_dir)
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


def _read_meta(adapter_dir: str | Path) -> dict:
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
