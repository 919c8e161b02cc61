"""``run`` (what ``shears export`` runs; ``shears.export.run_export``): check -> load -> export
and verify -> write, into one atomic output folder.

Output folder:
- ``adapter_model.safetensors`` + ``adapter_config.json``: the sub-adapter as a stock PEFT LoRA;
- ``merged/`` (with ``merge``): the model with the sub-adapter merged, HF layout + tokenizer;
- ``README.md``: the model card (:mod:`shears.export.report`); :data:`RESULTS`
  (``export_results.json``, an :class:`~shears.export.result.ExportResult`);
  ``export_config.json``.

Logit checks: :mod:`shears.export.verify`; the merge: :mod:`shears.export.merge`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.io import WEIGHTS, SuperAdapter, peft_key, warn_if_other_base
from shears.adapters.search_space import SearchSpace
from shears.adapters.select import SubAdapterChoice, resolve_sub_adapter
from shears.artifacts import (
    EXPORT_CONFIG,
    EXPORT_RESULTS,
    config_record,
    find_eval_results,
    read_eval_results,
)
from shears.errors import ShearsError
from shears.export.config import ExportConfig
from shears.export.merge import MergeStats, merge_adapter
from shears.export.peft_export import export_peft_adapter
from shears.export.report import (
    flatten_scalars,
    model_card,
    parameter_summary,
    rank_table,
    width_histogram,
)
from shears.export.result import (
    AdapterInfo,
    BaseModelInfo,
    ExportedSubAdapter,
    ExportResult,
    ShownEvaluation,
    SpaceInfo,
    Verification,
)
from shears.export.verify import Probe, verify_merged, verify_peft
from shears.models import find_targets, load_model, save_model, validate_model_spec
from shears.outputs import atomic_output, check_output
from shears.sparsity import count_parameters, zero_fraction
from shears.utils import atomic_write_json, atomic_write_text, package_versions

logger = logging.getLogger(__name__)

RESULTS = EXPORT_RESULTS  # the stage's results file: its presence marks the output complete


# ---------------------------------------------------------------------------- check


def _check_weights_file(adapter: str, space: SearchSpace) -> None:
    """Every module of the space has A and B in the weights file (read keys only)."""
    from safetensors import safe_open

    path = Path(adapter) / WEIGHTS
    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = set(fh.keys())
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ShearsError(f"adapter weights {str(path)!r} are unreadable: {exc}") from exc
    for m in space.modules:
        for which in ("A", "B"):
            if peft_key(m, which) not in keys:
                raise ShearsError(
                    f"adapter weights {str(path)!r} lack {peft_key(m, which)!r}: the weights and "
                    "search_space.json do not belong together"
                )


def _find_eval_results(cfg: ExportConfig) -> Path | None:
    if cfg.eval_results:
        p = Path(cfg.eval_results)
        if not p.is_file():
            raise ShearsError(f"evaluation results {cfg.eval_results!r} do not exist")
        return p
    return find_eval_results(cfg.adapter, cfg.sub_adapter)


def _load_eval(path: Path | None) -> ShownEvaluation | None:
    if path is None:
        return None
    metrics = flatten_scalars(read_eval_results(path))
    if not metrics:
        raise ShearsError(f"evaluation results {str(path)!r} hold no numbers to report")
    return ShownEvaluation(str(path), metrics)


def export_inputs(cfg: ExportConfig) -> list[str | None]:
    """What ``shears export`` reads: the output folder must not overlap any of it."""
    return [cfg.adapter, cfg.model, cfg.sub_adapter, cfg.eval_results]


@dataclass
class ExportPlan:
    """What :func:`check` established before the model is loaded."""

    saved: SuperAdapter  # the super-adapter's configs as saved (no weights)
    choice: SubAdapterChoice
    spec: str  # the base model to load
    evaluation: ShownEvaluation | None

    @property
    def space(self) -> SearchSpace:
        return self.saved.space


def _base_spec(cfg: ExportConfig, saved: SuperAdapter) -> str:
    """The base as given, else as recorded (its absolute path when it exists), checked."""
    spec = cfg.model or saved.base_spec
    if not spec:
        raise ShearsError(
            f"adapter {cfg.adapter!r} records no base model: pass --model (the model it was "
            "trained on)"
        )
    try:
        validate_model_spec(spec)
    except ShearsError as exc:
        if cfg.model:
            raise
        raise ShearsError(f"{exc} (the base recorded in {cfg.adapter!r}; pass --model)") from exc
    return spec


def check(cfg: ExportConfig) -> ExportPlan:
    """Everything that can be checked without loading the model; ShearsError on bad input."""
    saved = SuperAdapter.read(cfg.adapter)
    choice = resolve_sub_adapter(cfg.sub_adapter, saved.space)
    spec = _base_spec(cfg, saved)
    warn_if_other_base(cfg.adapter, cfg.model, "exported")
    if saved.config.sparse_adapter and cfg.keep_sparsity is False:
        raise ShearsError(
            "the adapter was trained mask-aware (sparse_adapter); merging it without the mask "
            "would change the model: drop --no-keep-sparsity"
        )
    check_output(cfg.output_dir, "export", overwrite=cfg.overwrite, inputs=export_inputs(cfg))
    _check_weights_file(cfg.adapter, saved.space)
    return ExportPlan(saved, choice, spec, _load_eval(_find_eval_results(cfg)))


# ---------------------------------------------------------------------------- load


@dataclass
class LoadedBase:
    """The base model with the super-adapter injected at the chosen sub-adapter."""

    model: nn.Module
    tokenizer: Any
    layers: dict[str, ElasticLoRALinear]
    dtype: torch.dtype
    info: BaseModelInfo
    counts: dict[str, int]  # parameters / nonzero_parameters of the bare base
    module_names: list[str]


def _base_path(model: nn.Module, spec: str) -> str:
    """Where the base was loaded from (absolute for a local folder)."""
    path = str(getattr(model, "name_or_path", "") or spec)
    return str(Path(path).resolve()) if Path(path).exists() else path


def load(cfg: ExportConfig, plan: ExportPlan) -> LoadedBase:
    """Load the base, measure its sparsity, inject the adapter and activate the sub-adapter."""
    model, tok = load_model(plan.spec, dtype=cfg.dtype, device=cfg.device)
    dtype = next(model.parameters()).dtype
    counts = count_parameters(model)
    block_sparsity = zero_fraction(m.weight for m in find_targets(model).values()) or 0.0
    module_names = [n for n, _ in model.named_modules() if n]
    layers = SuperAdapter.load(model, cfg.adapter, dropout=0.0).layers
    model.eval()
    target_sparsity = zero_fraction(x.base_layer.weight for x in layers.values()) or 0.0
    plan.space.apply(layers, plan.choice.config)
    info = BaseModelInfo(
        spec=plan.spec,
        path=_base_path(model, plan.spec),
        dtype=str(dtype).replace("torch.", ""),
        block_linear_sparsity=block_sparsity,
        target_sparsity=target_sparsity,
    )
    return LoadedBase(model, tok, layers, dtype, info, counts, module_names)


# ---------------------------------------------------------------------------- export and verify


def _export_model_files(
    cfg: ExportConfig,
    plan: ExportPlan,
    base: LoadedBase,
    probe: Probe,
    ver: Verification | None,
    tmp: Path,
) -> tuple[dict[str, Any], MergeStats | None]:
    """Write the PEFT adapter (and with ``cfg.merge`` the merged model) into ``tmp``, checking
    each against ``probe`` when ``ver`` is given; return the adapter's summary (its ``files``
    with ``merged/`` added) and the merge's stats."""
    summary = export_peft_adapter(
        base.layers,
        plan.space,
        plan.choice.config,
        tmp,
        base_model=base.info.path,
        other_modules=base.module_names,
        dropout=plan.saved.config.dropout,
    )
    if ver is not None:
        verify_peft(base.model, base.layers, tmp, probe, plan.saved.config.sparse_adapter, ver)
    if not cfg.merge:
        return summary, None
    stats = merge_adapter(base.model, cfg.keep_sparsity)
    if ver is not None:
        verify_merged(base.model, probe, stats, ver)
    save_model(base.model, base.tokenizer, tmp / "merged")
    summary["files"] = [*summary["files"], "merged/"]
    return summary, stats


# ---------------------------------------------------------------------------- result and write


def _sub_adapter(plan: ExportPlan, summary: dict[str, Any]) -> ExportedSubAdapter:
    config = plan.choice.config
    return ExportedSubAdapter(
        source=plan.choice.source,
        details=plan.choice.details,
        config=config,
        width_histogram=width_histogram(plan.space, config),
        rank_table=rank_table(plan.space, config),
        anchored_pattern_keys=summary["anchored_pattern_keys"],
    )


def _result(
    cfg: ExportConfig,
    plan: ExportPlan,
    base: LoadedBase,
    summary: dict[str, Any],
    parts: tuple[Verification | None, MergeStats | None],
    t0: float,
) -> ExportResult:
    """The :class:`ExportResult` of an export (``parts``: its verification and merge)."""
    out, saved = Path(cfg.output_dir), plan.saved
    return ExportResult(
        name=out.name,
        output_dir=str(out),
        files=[*summary["files"], "README.md", RESULTS, EXPORT_CONFIG],
        versions=package_versions("shears", "peft", "transformers", "torch"),
        base_model=base.info,
        adapter=AdapterInfo(
            str(cfg.adapter), saved.config.alpha, saved.config.dropout, saved.config.sparse_adapter
        ),
        search_space=SpaceInfo.of(saved),
        sub_adapter=_sub_adapter(plan, summary),
        parameters=parameter_summary(
            base.counts["parameters"],
            base.counts["nonzero_parameters"],
            plan.space,
            plan.choice.config,
        ),
        evaluation=plan.evaluation,
        verification=parts[0],
        merge=parts[1],
        time_s=round(time.perf_counter() - t0, 2),
    )


def write_results(folder: Path, cfg: ExportConfig, result: ExportResult) -> None:
    """The one writer of the model card (also in ``merged/``), ``export_results.json`` and
    ``export_config.json``."""
    card = model_card(result)
    atomic_write_text(folder / "README.md", card)
    if result.merge is not None:
        atomic_write_text(folder / "merged" / "README.md", card)
    atomic_write_json(folder / RESULTS, result.to_dict())
    atomic_write_json(folder / EXPORT_CONFIG, config_record(cfg))


# ---------------------------------------------------------------------------- run


def run(cfg: ExportConfig) -> ExportResult:
    """Export the chosen sub-adapter (and optionally the merged model); return what
    ``export_results.json`` holds. Nothing is written unless every check passes."""
    t0 = time.perf_counter()
    plan = check(cfg)
    logger.info(
        "exporting the %s sub-adapter of %s (%d groups) on %s",
        plan.choice.source,
        cfg.adapter,
        len(plan.space.groups),
        plan.spec,
    )
    base = load(cfg, plan)
    probe = Probe.of(base.model, base.dtype)  # our in-memory sub-adapter
    ver = probe.verification() if cfg.verify else None
    out = Path(cfg.output_dir)
    with atomic_output(out, "export", overwrite=cfg.overwrite, inputs=export_inputs(cfg)) as tmp:
        summary, stats = _export_model_files(cfg, plan, base, probe, ver, tmp)
        result = _result(cfg, plan, base, summary, (ver, stats), t0)
        write_results(tmp, cfg, result)
    logger.info(
        "wrote %s in %.1f s: %.2fx fewer non-zero parameters than dense base + LoRA r_max",
        out,
        result.time_s,
        result.parameters["nonzero_ratio_dense_over_shears"],
    )
    return result
