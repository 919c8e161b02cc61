"""``run_export``: the export stage end to end (checks first, then one atomic output folder).

Output folder:
- ``adapter_model.safetensors`` + ``adapter_config.json``: the sub-adapter as a stock PEFT LoRA;
- ``merged/`` (with ``merge``): the model with the sub-adapter merged, HF layout + tokenizer;
- ``README.md``: the model card; ``export_results.json``; ``export_config.json``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shears.adapters.elastic_lora import ElasticLoRALinear, remove_elastic_lora
from shears.adapters.io import WEIGHTS, SuperAdapter, peft_key, warn_if_other_base
from shears.adapters.search_space import SearchSpace
from shears.adapters.select import SubAdapterChoice, resolve_sub_adapter
from shears.artifacts import EXPORT_CONFIG, EXPORT_RESULTS, find_eval_results, read_eval_results
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
from shears.models import (
    find_targets,
    get_submodule_parent,
    load_model,
    save_model,
    validate_model_spec,
)
from shears.outputs import atomic_output, check_output
from shears.sparsity import count_parameters, zero_fraction
from shears.utils import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

PROBE_SHAPE = (2, 16)  # (batch, seq) of random tokens for the logit checks


# ---------------------------------------------------------------------------- checks


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


def _load_eval(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    metrics = flatten_scalars(read_eval_results(path))
    if not metrics:
        raise ShearsError(f"evaluation results {str(path)!r} hold no numbers to report")
    return {"file": str(path), "metrics": metrics}


def export_inputs(cfg: ExportConfig) -> list[str | None]:
    """What ``shears export`` reads: the output folder must not overlap any of it."""
    return [cfg.adapter, cfg.model, cfg.sub_adapter, cfg.eval_results]


def check_export(
    cfg: ExportConfig,
) -> tuple[SuperAdapter, SearchSpace, SubAdapterChoice, str, dict]:
    """Everything that can be checked without loading the model; ShearsError on bad input.

    Returns ``(saved, space, choice, model_spec, evaluation)``; ``saved``: the super-adapter's
    configs as saved (no weights).
    """
    saved = SuperAdapter.read(cfg.adapter)
    space = saved.space
    choice = resolve_sub_adapter(cfg.sub_adapter, space)
    # the base as recorded: its absolute path when it exists (works from any folder), else as given
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
    warn_if_other_base(cfg.adapter, cfg.model, "exported")
    if saved.config.sparse_adapter and cfg.keep_sparsity is False:
        raise ShearsError(
            "the adapter was trained mask-aware (sparse_adapter); merging it without the mask "
            "would change the model: drop --no-keep-sparsity"
        )
    check_output(cfg.output_dir, "export", overwrite=cfg.overwrite, inputs=export_inputs(cfg))
    _check_weights_file(cfg.adapter, space)
    evaluation = _load_eval(_find_eval_results(cfg))
    return saved, space, choice, spec, evaluation


# ---------------------------------------------------------------------------- logits


@torch.no_grad()
def probe_ids(model: nn.Module, shape: tuple[int, int] = PROBE_SHAPE) -> torch.Tensor:
    """Fixed pseudo-random token ids (batch, seq) inside the model's vocabulary."""
    vocab = model.get_input_embeddings().num_embeddings
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, vocab, shape, generator=gen)
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids).logits.float().cpu()  # (batch, seq, vocab)


def _reattach(model: nn.Module, layers: dict[str, ElasticLoRALinear]) -> None:
    """Put the elastic wrappers back around their base linears (after a stock-PEFT check)."""
    for name, layer in layers.items():
        parent, attr = get_submodule_parent(model, name)
        if getattr(parent, attr) is not layer.base_layer:
            raise RuntimeError(f"{name}: the base linear was replaced during the PEFT check")
        setattr(parent, attr, layer)


@torch.no_grad()
def stock_peft_logits(
    model: nn.Module, layers: dict[str, ElasticLoRALinear], adapter_dir: Path, ids: torch.Tensor
) -> torch.Tensor:
    """Logits of ``model``'s bare base with the adapter in ``adapter_dir`` loaded by stock PEFT.

    The elastic wrappers are taken off for the check and put back afterwards (no copy of the
    model is made).
    """
    from peft import PeftModel

    remove_elastic_lora(model)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir))
        peft_model.eval()
        out = logits_of(peft_model, ids)
        peft_model.unload()
    finally:
        _reattach(model, layers)
    return out


def _tolerance(ref: torch.Tensor, dtype: torch.dtype) -> float:
    rel = 1e-4 if dtype == torch.float32 else 3e-2
    return rel * max(1.0, float(ref.abs().max()))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------- run


def run_export(cfg: ExportConfig) -> dict[str, Any]:
    """Export the chosen sub-adapter (and optionally the merged model); returns the results dict
    that is also written to ``export_results.json``."""
    import peft
    import transformers

    import shears

    t0 = time.perf_counter()
    saved, space, choice, spec, evaluation = check_export(cfg)
    config = choice.config
    logger.info(
        "exporting the %s sub-adapter of %s (%d groups) on %s",
        choice.source,
        cfg.adapter,
        len(space.groups),
        spec,
    )

    model, tok = load_model(spec, dtype=cfg.dtype, device=cfg.device)
    dtype = next(model.parameters()).dtype
    base_counts = count_parameters(model)
    block_linears = find_targets(model)
    block_sparsity = zero_fraction(m.weight for m in block_linears.values()) or 0.0
    module_names = [n for n, _ in model.named_modules() if n]
    layers = SuperAdapter.load(model, cfg.adapter, dropout=0.0).layers
    model.eval()
    target_sparsity = zero_fraction(x.base_layer.weight for x in layers.values()) or 0.0
    space.apply(layers, config)
    base_path = str(getattr(model, "name_or_path", "") or spec)
    if Path(base_path).exists():
        base_path = str(Path(base_path).resolve())

    ids = probe_ids(model)
    ref = logits_of(model, ids)  # our in-memory sub-adapter
    tol = _tolerance(ref, dtype)
    verification: dict[str, Any] = {"probe_tokens": list(ids.shape), "tolerance": tol, "lines": []}
    merge_stats: MergeStats | None = None
    files: list[str] = []
    out = Path(cfg.output_dir)
    with atomic_output(out, "export", overwrite=cfg.overwrite, inputs=export_inputs(cfg)) as tmp:
        summary = export_peft_adapter(
            layers,
            space,
            config,
            tmp,
            base_model=base_path,
            other_modules=module_names,
            dropout=saved.config.dropout,
        )
        files += summary["files"]
        if cfg.verify:
            _verify_peft(
                model, layers, tmp, ids, ref, tol, saved.config.sparse_adapter, verification
            )
        if cfg.merge:
            merge_stats = merge_adapter(model, cfg.keep_sparsity)
            if cfg.verify:
                _verify_merged(model, ids, ref, tol, merge_stats, verification)
            save_model(model, tok, tmp / "merged")
            files.append("merged/")

        info = {
            "name": out.name,
            "output_dir": str(out),
            "files": files + ["README.md", EXPORT_RESULTS, EXPORT_CONFIG],
            "versions": {
                "shears": shears.__version__,
                "peft": peft.__version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            "base_model": {
                "spec": spec,
                "path": base_path,
                "dtype": str(dtype).replace("torch.", ""),
                "block_linear_sparsity": block_sparsity,
                "target_sparsity": target_sparsity,
            },
            "adapter": {
                "path": str(cfg.adapter),
                "alpha": saved.config.alpha,
                "dropout": saved.config.dropout,
                "sparse_adapter": saved.config.sparse_adapter,
            },
            "search_space": {
                "r_max": space.r_max,
                "groups": len(space.groups),
                "modules": len(space.modules),
                "targets": list(saved.config.targets),
                "widths": sorted({w for g in space.groups for w in g.widths}, reverse=True),
                "grouping": " / ".join("[" + ", ".join(g) + "]" for g in saved.space_config.groups)
                or "one group per module",
            },
            "sub_adapter": {
                "source": choice.source,
                "details": choice.details,
                "config": config,
                "width_histogram": width_histogram(space, config),
                "rank_table": rank_table(space, config),
                "anchored_pattern_keys": summary["anchored_pattern_keys"],
            },
            "parameters": parameter_summary(
                base_counts["parameters"], base_counts["nonzero_parameters"], space, config
            ),
            "evaluation": evaluation,
            "verification": verification if cfg.verify else None,
            "merge": None,
        }
        if merge_stats is not None:
            info["merge"] = merge_stats.to_dict() | {"summary": merge_stats.summary()}
        info["time_s"] = round(time.perf_counter() - t0, 2)
        card = model_card(info)
        atomic_write_text(tmp / "README.md", card)
        if cfg.merge:
            atomic_write_text(tmp / "merged" / "README.md", card)
        results = {k: v for k, v in info.items()}
        results["sub_adapter"] = {k: v for k, v in info["sub_adapter"].items() if k != "rank_table"}
        atomic_write_json(tmp / EXPORT_RESULTS, results)
        atomic_write_json(tmp / EXPORT_CONFIG, asdict(cfg))
    logger.info(
        "wrote %s in %.1f s: %.2fx fewer non-zero parameters than dense base + LoRA r_max",
        out,
        info["time_s"],
        info["parameters"]["nonzero_ratio_dense_over_shears"],
    )
    return results


def _verify_peft(
    model: nn.Module,
    layers: dict[str, ElasticLoRALinear],
    adapter_dir: Path,
    ids: torch.Tensor,
    ref: torch.Tensor,
    tol: float,
    mask_aware: bool,
    verification: dict[str, Any],
) -> None:
    peft_logits = stock_peft_logits(model, layers, adapter_dir, ids)
    diff = _max_diff(peft_logits, ref)
    verification["stock_peft_max_abs_logit_diff"] = diff
    if not mask_aware:
        if diff > tol:
            raise ShearsError(
                f"stock PEFT does not reproduce the sub-adapter (max |logit diff| {diff:.3g} > "
                f"{tol:.3g}); nothing was written"
            )
        verification["lines"].append(
            f"stock PEFT `PeftModel.from_pretrained` reproduces the sub-adapter: max |logit "
            f"difference| {diff:.3g} on {ids.shape[0]}x{ids.shape[1]} probe tokens"
        )
        logger.info("stock PEFT check passed: max |logit diff| %.3g", diff)
        return
    # mask-aware: stock PEFT applies the unmasked delta; measure both facts
    for layer in layers.values():
        layer.sparse_adapter = False
    try:
        unmasked = logits_of(model, ids)
    finally:
        for layer in layers.values():
            layer.sparse_adapter = True
    diff_unmasked = _max_diff(peft_logits, unmasked)
    verification["stock_peft_vs_unmasked_max_abs_logit_diff"] = diff_unmasked
    verification["lines"].append(
        f"stock PEFT (unmerged) differs from the mask-aware sub-adapter by max |logit diff| "
        f"{diff:.3g}: it adds the unmasked delta (its logits equal the same adapter without the "
        f"mask to {diff_unmasked:.3g}); use the merged model"
    )
    logger.warning(
        "mask-aware adapter: stock PEFT cannot apply the mask; loaded unmerged it differs from "
        "the trained sub-adapter by max |logit diff| %.3g. Use --merge (keeps sparsity).",
        diff,
    )


def _verify_merged(
    model: nn.Module,
    ids: torch.Tensor,
    ref: torch.Tensor,
    tol: float,
    stats: MergeStats,
    verification: dict[str, Any],
) -> None:
    diff = _max_diff(logits_of(model, ids), ref)
    verification["merged_max_abs_logit_diff"] = diff
    exact = stats.mask_aware or not stats.keep_sparsity
    if exact and diff > tol:
        raise ShearsError(
            f"the merged model does not reproduce the sub-adapter (max |logit diff| {diff:.3g} > "
            f"{tol:.3g}); nothing was written"
        )
    if exact:
        verification["lines"].append(
            f"the merged model reproduces the sub-adapter: max |logit difference| {diff:.3g}"
        )
    else:
        verification["lines"].append(
            f"the masked merge of an adapter not trained mask-aware changes the logits by max "
            f"|difference| {diff:.3g} (the delta outside the mask was dropped)"
        )
