"""The prune stage: :func:`run` (check, load, prune, save; ``shears.prune.run_prune``) and
:func:`prune_model` (a model in memory), each returning a
:class:`~shears.prune.result.PruneResult` (what ``prune_report.json`` holds)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from shears.artifacts import PRUNE_CONFIG, PRUNE_PLOT, PRUNE_REPORT, config_record
from shears.context import check_length, check_prune_context
from shears.data.calibration import calibration_ids, heldout_ids, sample_windows, token_stream
from shears.data.spec import validate_source
from shears.errors import ShearsError
from shears.models import (
    find_targets,
    in_out_features,
    load_model,
    max_positions,
    model_skeleton,
    validate_model_spec,
)
from shears.outputs import atomic_output, check_output
from shears.precision import describe
from shears.prune.calibrate import SequentialPruner
from shears.prune.config import PruneConfig
from shears.prune.disk import check_disk_source, check_offload_dir, open_disk
from shears.prune.report import plot_sparsity
from shears.prune.result import CalibrationInfo, PerplexityInfo, PruneResult
from shears.prune.stream import BlockStream, CpuStream, load_dtype_name, make_stream
from shears.sparsity import total_stats
from shears.utils import atomic_write_json, peak_memory, resolve_device, resolve_dtype

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- checks


def check_pattern_fits(targets: dict[str, nn.Module], nm: tuple[int, int] | None) -> None:
    """N:M needs every target's input width divisible by M."""
    if nm is None:
        return
    for name, mod in targets.items():
        in_f, _ = in_out_features(mod)
        if in_f % nm[1]:
            raise ShearsError(
                f"--pattern {nm[0]}:{nm[1]} needs every target's input width divisible by "
                f"{nm[1]}; {name} has {in_f} (use --ignore to skip it)"
            )


def inputs(cfg: PruneConfig) -> list[str]:
    """What ``shears prune`` reads: the output folder must not overlap any of it."""
    return [cfg.model, cfg.calibration, cfg.ppl_source]


def check(cfg: PruneConfig, overwrite: bool = False) -> None:
    """Every check that needs no weights: model spec, output folder, text sources, device, dtype,
    context length, target patterns, the offload source and folder."""
    validate_model_spec(cfg.model, cfg.gguf_file)
    if cfg.offload == "disk":
        check_disk_source(cfg)
        check_offload_dir(cfg)
    check_output(cfg.output_dir, "prune", overwrite=overwrite, inputs=inputs(cfg))
    if cfg.needs_calibration:
        validate_source(cfg.calibration, "--calibration")
    if cfg.eval_ppl:
        validate_source(cfg.ppl_source, "--ppl-source")
    resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    check_prune_context(cfg, max_positions(cfg.model, cfg.gguf_file, cfg.trust_remote_code))
    skeleton = model_skeleton(cfg.model, cfg.gguf_file, cfg.trust_remote_code)
    if skeleton is not None:  # module patterns against the structure, without the weights
        check_pattern_fits(find_targets(skeleton, cfg.targets, cfg.ignore), cfg.nm)


def load(cfg: PruneConfig) -> tuple[nn.Module, object, BlockStream]:
    """``(model, tokenizer, stream)`` as ``cfg.offload`` says: on ``cfg.device`` (none), in CPU
    memory in the dtype ``cfg.dtype`` means on ``cfg.device`` (cpu), or read block by block from
    its folder (disk)."""
    if cfg.offload == "disk":
        return open_disk(cfg)
    if cfg.offload == "cpu":
        device = resolve_device(cfg.device)
        dtype = load_dtype_name(cfg, device)
        model, tok = load_model(cfg.model, dtype, "cpu", cfg.gguf_file, cfg.trust_remote_code)
        return model, tok, CpuStream(model, device)
    model, tok = load_model(cfg.model, cfg.dtype, cfg.device, cfg.gguf_file, cfg.trust_remote_code)
    return model, tok, BlockStream(model)


# ---------------------------------------------------------------------------- data


def build_calibration(
    tokenizer: object, cfg: PruneConfig, calibration: torch.Tensor | Sequence[str] | None = None
) -> torch.Tensor:
    """(nsamples, seqlen) token windows from ``calibration`` (ids or texts) or ``cfg``'s source."""
    if isinstance(calibration, torch.Tensor):
        if calibration.dim() != 2:
            raise ShearsError(
                f"calibration ids must be (nsamples, seqlen), got {tuple(calibration.shape)}"
            )
        return calibration.long()
    if calibration is not None:
        ids = token_stream(tokenizer, calibration, 2 * cfg.nsamples * cfg.seqlen)
        return sample_windows(ids, cfg.nsamples, cfg.seqlen, cfg.seed)
    return calibration_ids(
        tokenizer,
        cfg.calibration,
        cfg.nsamples,
        cfg.seqlen,
        cfg.seed,
        cfg.text_field,
        cfg.data_config,
        cfg.data_split,
    )


def calibration_info(
    ids: torch.Tensor | None, source: str, cfg: PruneConfig
) -> CalibrationInfo | None:
    """What the report says about the calibration windows ``ids`` (``None``: magnitude)."""
    if ids is None:
        return None
    n, seqlen = ids.shape
    return CalibrationInfo(source, int(n), int(seqlen), int(ids.numel()), cfg.seed, cfg.batch_size)


# ---------------------------------------------------------------------------- prune


def prune_model(
    model: nn.Module,
    tokenizer: object,
    cfg: PruneConfig,
    calibration: torch.Tensor | Sequence[str] | None = None,
    progress: bool = True,
    stream: BlockStream | None = None,
) -> PruneResult:
    """Prune ``model`` in place as ``cfg`` says; return the report.

    ``calibration``: token ids (nsamples, seqlen), a list of texts to sample windows from, or
    ``None`` to read ``cfg.calibration``. Ignored by magnitude pruning. ``stream``: how the
    blocks reach the compute device (:mod:`shears.prune.stream`); default from ``cfg.offload``
    (``cpu``: ``model`` in CPU memory, one block at a time on ``cfg.device``).
    """
    stream = stream or make_stream(model, cfg)
    targets = find_targets(model, cfg.targets, cfg.ignore)
    check_pattern_fits(targets, cfg.nm)
    if cfg.needs_calibration:
        width = calibration.shape[-1] if isinstance(calibration, torch.Tensor) else cfg.seqlen
        check_length(int(width), "--seqlen", max_positions(model))
    t0 = time.perf_counter()
    ids = build_calibration(tokenizer, cfg, calibration) if cfg.needs_calibration else None
    t_data = time.perf_counter() - t0
    logger.info(
        "pruning %d layers with %s, %s at sparsity %.3f%s",
        len(targets),
        cfg.method,
        cfg.pattern,
        cfg.sparsity,
        f", calibration {tuple(ids.shape)}" if ids is not None else "",
    )
    t1 = time.perf_counter()
    pruner = SequentialPruner(model, targets, cfg, progress=progress, stream=stream)
    layers = pruner.run(ids)
    stream.finish()
    t_prune = time.perf_counter() - t1
    overall = total_stats(layers)
    logger.info(
        "pruned in %.1f s: %.4f of %d target weights are zero",
        t_prune,
        overall["sparsity"],
        overall["numel"],
    )
    source = "in-memory" if calibration is not None else cfg.calibration
    return PruneResult(
        model=cfg.model,
        output_dir=str(cfg.output_dir),
        method=cfg.method,
        pattern=cfg.pattern,
        sparsity=cfg.sparsity,
        calibration=calibration_info(ids, source, cfg),
        targets=overall,
        layers=layers,
        model_parameters=stream.count_parameters(),
        seconds={"calibration_data": round(t_data, 3), "prune": round(t_prune, 3)},
        peak_memory=peak_memory(),
        sparsity_profile=cfg.sparsity_profile,
        profile=pruner.profile,
        precision=cfg.precision,
        autocast=describe(pruner.autocast if ids is not None else None),
        device_memory=stream.record(),
    )


# ---------------------------------------------------------------------------- write


def save_pruned(
    model: nn.Module,
    tokenizer: object | None,
    result: PruneResult,
    cfg: PruneConfig,
    overwrite: bool = False,
    t_start: float | None = None,
    stream: BlockStream | None = None,
) -> Path:
    """Write ``cfg.output_dir`` in one atomic rename: model (safetensors), tokenizer,
    ``prune_report.json``, ``prune_config.json`` and (if ``cfg.plot``) ``sparsity_per_layer.png``.
    A killed run leaves only a hidden ``.<name>.tmp-*`` folder, never a complete-looking output.
    ``stream``: the one the model was pruned with (``--offload disk`` writes its block shards)."""
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config  # GGUF-dequantised weights are plain floats now
    with atomic_output(cfg.output_dir, "prune", overwrite=overwrite, inputs=inputs(cfg)) as tmp:
        if stream is not None:
            stream.save_model(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / PRUNE_CONFIG, config_record(cfg))
        if cfg.plot:
            title = f"{cfg.model}: {cfg.method} {cfg.pattern}"
            if result.profile is not None:
                title += f", OWL (M={cfg.owl_m:g}, lambda={cfg.owl_lambda:g})"
            plot_sparsity(result.layers, tmp / PRUNE_PLOT, title, result.profile)
        if t_start is not None:
            result.seconds["total"] = round(time.perf_counter() - t_start, 3)
        result.peak_memory = peak_memory()
        result.write(tmp)
    return Path(cfg.output_dir)


# ---------------------------------------------------------------------------- run


def _perplexity(model: nn.Module, tokenizer: object, held: torch.Tensor, cfg: PruneConfig) -> float:
    """Held-out perplexity in full precision (no autocast, whatever ``cfg.precision``), so that
    dense and pruned numbers stay comparable across runs and machines."""
    from shears.evaluate.perplexity import perplexity

    return perplexity(
        model, tokenizer, held, cfg.ppl_seqlen, batch_size=max(1, cfg.batch_size // 4)
    )


def dense_perplexity(
    model: nn.Module, tokenizer: object, cfg: PruneConfig
) -> tuple[PerplexityInfo, torch.Tensor]:
    """Perplexity of the still-dense ``model`` on ``cfg``'s held-out text, and that text's ids."""
    held = heldout_ids(
        tokenizer, cfg.ppl_source, cfg.ppl_tokens, cfg.text_field, cfg.data_config, cfg.ppl_split
    )
    dense = _perplexity(model, tokenizer, held, cfg)
    logger.info("dense perplexity %.3f on %d held-out tokens", dense, held.numel())
    return PerplexityInfo(cfg.ppl_source, int(held.numel()), cfg.ppl_seqlen, dense), held


def run(cfg: PruneConfig, overwrite: bool = False, progress: bool = True) -> PruneResult:
    """Load ``cfg.model``, prune it, optionally measure perplexity, and save everything into
    ``cfg.output_dir`` in one atomic step: the model (safetensors) and tokenizer,
    ``prune_report.json``, ``sparsity_per_layer.png`` and ``prune_config.json``.

    ``cfg.offload``: cpu / disk load the model into CPU memory / read it from disk block by block
    (:mod:`shears.prune.stream`); perplexity (``--eval-ppl``, cpu) then runs on the CPU.
    """
    t_start = time.perf_counter()
    check(cfg, overwrite)
    model, tok, stream = load(cfg)
    try:
        return _run(cfg, model, tok, stream, t_start, overwrite, progress)
    finally:
        stream.close()


def _run(
    cfg: PruneConfig,
    model: nn.Module,
    tok: object,
    stream: BlockStream,
    t_start: float,
    overwrite: bool,
    progress: bool,
) -> PruneResult:
    t_load = time.perf_counter() - t_start
    check_prune_context(cfg, max_positions(model))  # GGUF / hub models: known only now
    check_pattern_fits(find_targets(model, cfg.targets, cfg.ignore), cfg.nm)
    t0 = time.perf_counter()
    ids = build_calibration(tok, cfg) if cfg.needs_calibration else None
    t_data = time.perf_counter() - t0

    t0 = time.perf_counter()
    ppl, held = dense_perplexity(model, tok, cfg) if cfg.eval_ppl else (None, None)
    t_ppl = time.perf_counter() - t0 if ppl is not None else 0.0

    result = prune_model(model, tok, cfg, calibration=ids, progress=progress, stream=stream)
    if result.calibration is not None:
        result.calibration.source = cfg.calibration

    if ppl is not None:
        t0 = time.perf_counter()
        ppl.pruned = _perplexity(model, tok, held, cfg)
        logger.info("pruned perplexity %.3f (dense %.3f)", ppl.pruned, ppl.dense)
        t_ppl += time.perf_counter() - t0
    result.perplexity = ppl
    result.seconds.update(
        load=round(t_load, 3), calibration_data=round(t_data, 3), perplexity=round(t_ppl, 3)
    )
    save_pruned(model, tok, result, cfg, overwrite=overwrite, t_start=t_start, stream=stream)
    logger.info("saved the pruned model and %s to %s", PRUNE_REPORT, Path(cfg.output_dir))
    return result
