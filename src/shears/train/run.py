"""The train stage: :func:`run` (load the model and the data of a :class:`TrainConfig`, then
train) and :func:`train_nls` (train a model already loaded), both returning a
:class:`TrainResult` (:data:`RESULTS` in the output folder).

The output folder (written in one rename when training ends; before that it holds checkpoints,
see :mod:`shears.train.folder`): the super-adapter at r_max in PEFT layout
(``adapter_model.safetensors``, ``adapter_config.json``, ``search_space.json``,
``shears_adapter.json``), ``train_config.json``, ``trainer_state.json``, ``train_results.json``
and ``loss.png``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shears.adapters.elastic_lora import elastic_layers
from shears.adapters.io import SuperAdapter
from shears.adapters.search_space import SearchSpace
from shears.artifacts import TRAIN_PLOT, TRAIN_RESULTS, write_train_config
from shears.config import local_spec_path
from shears.context import check_train_context
from shears.errors import ShearsError
from shears.outputs import atomic_output
from shears.train.config import TrainConfig
from shears.train.data import EncodedDataset, PadCollator, encode_examples, load_train_examples
from shears.train.folder import STATE_FILE, output_state
from shears.train.nls import Session, barrier, fit, start
from shears.train.plots import plot_loss
from shears.train.result import TrainResult
from shears.train.sharding import gathered
from shears.train.teacher import (
    Distiller,
    freeze,
    load_teacher,
    teacher_adapter_kind,
    teacher_spec,
)
from shears.utils import peak_memory, resolve_device, set_seed

logger = logging.getLogger(__name__)

RESULTS = TRAIN_RESULTS


# ---------------------------------------------------------------------------- a loaded model


def train_nls(
    model: nn.Module,
    tokenizer,
    train_examples: list[dict],
    cfg: TrainConfig,
    *,
    adapter: SuperAdapter | None = None,
    callbacks: Sequence = (),
    base_model: str | None = None,
    teacher: nn.Module | None = None,
) -> TrainResult:
    """Train an elastic LoRA super-adapter on ``model`` with NLS and write ``cfg.output_dir``.

    ``model`` is changed in place: a super-adapter of ``cfg.adapter`` / ``cfg.space`` is injected
    (unless ``adapter`` is given: the one already in ``model``, e.g. from
    :meth:`SuperAdapter.load`) and trained; the base weights stay frozen and bit-identical.
    Every optimizer step activates ``space.sample(cfg.seed, step)``. ``train_examples`` are dicts
    with ``instruction`` / ``input`` / ``output``, encoded with ``cfg.prompt_style``.
    ``teacher``: the dense teacher of ``cfg.distill`` (frozen here; loaded from
    ``cfg.teacher`` / the prune folder of ``base_model`` when not given). ``callbacks``: extra ``transformers.TrainerCallback`` objects. Returns the results (also
    written to ``train_results.json``); the maximal sub-adapter is active afterwards.
    """
    from shears.models import max_positions

    state = output_state(cfg)  # check
    check_train_context(cfg, max_positions(model))  # before any example is tokenized
    set_seed(cfg.seed)  # adapter initialisation
    adapter = _super_adapter(model, cfg, adapter, base_model)  # errors before any training
    if state == "done":
        return _load_finished(adapter, cfg.output_path)
    dataset, collator, data_stats = _encode(tokenizer, train_examples, cfg)  # load
    distiller = _distiller(cfg, teacher, base_model, model)
    session = start(cfg, state)  # act
    trainer, metrics = fit(model, dataset, collator, adapter, cfg, session, callbacks, distiller)
    result = _result(trainer, metrics, adapter.space, data_stats, cfg, session)
    with gathered(adapter.layers):  # every rank gathers what FSDP shards; the main one writes
        if session.args.should_save:
            _write_output(trainer, adapter, cfg, result)
            if session.work != session.out:
                shutil.rmtree(session.work, ignore_errors=True)
    barrier(session.args)
    logger.info("super-adapter written to %s (final loss %s)", session.out, result.final_loss)
    return result


def _super_adapter(
    model: nn.Module, cfg: TrainConfig, adapter: SuperAdapter | None, base_model: str | None
) -> SuperAdapter:
    """The super-adapter to train: ``adapter`` (already in ``model``), else a new one injected
    (in fp32 over a half-precision base); ``base_model`` is the base recorded in the folder."""
    if adapter is None:
        if elastic_layers(model):
            raise ShearsError("the model already has elastic adapters; pass their SuperAdapter")
        base_dtype = next(model.parameters()).dtype
        dtype = torch.float32 if base_dtype in (torch.float16, torch.bfloat16) else None
        return SuperAdapter.create(
            model, cfg.adapter, cfg.space, base_model=base_model, dtype=dtype
        )
    if base_model is not None:
        adapter.base_model, adapter.base_model_path = base_model, local_spec_path(base_model)
    return adapter


def _distiller(
    cfg: TrainConfig, teacher: nn.Module | None, base_model: str | None, model: nn.Module
) -> Distiller | None:
    """The distillation state of ``cfg.distill`` (``None`` when off): ``teacher`` frozen, or
    the teacher of :func:`teacher_spec` loaded on the student's device."""
    if not cfg.distill:
        return None
    spec = None
    if teacher is None:
        spec = teacher_spec(base_model or cfg.model, cfg.teacher)
        device = str(next(model.parameters()).device)
        teacher = load_teacher(spec, cfg.teacher_adapter, cfg.dtype, device)
    return Distiller(
        freeze(teacher), cfg.distill_weight, cfg.distill_temperature, cfg.distill_hidden, spec
    )


def _load_finished(adapter: SuperAdapter, out: Path) -> TrainResult:
    """Load the saved super-adapter of a finished run into the injected layers (the maximal
    sub-adapter active); return its results."""
    logger.info("%s is already complete; nothing to train (loading its adapter)", out)
    adapter.space.apply(adapter.layers, adapter.space.maximal())
    adapter.load_weights(out)
    return TrainResult.read(out)


def _encode(
    tokenizer, examples: list[dict], cfg: TrainConfig
) -> tuple[EncodedDataset, PadCollator, dict[str, int]]:
    """The encoded training set, its collator and its stats (examples, dropped, ...)."""
    dataset, stats = encode_examples(
        tokenizer, examples, cfg.prompt_style, cfg.cutoff_len, cfg.train_on_inputs, cfg.add_eos
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return dataset, PadCollator(pad_id), stats


def _result(
    trainer,
    metrics: dict[str, Any],
    space: SearchSpace,
    data_stats: dict[str, int],
    cfg: TrainConfig,
    session: Session,
) -> TrainResult:
    """The results of a finished fit."""
    args, ckpt = session.args, session.resume_from
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return TrainResult(
        global_steps=trainer.state.global_step,
        epochs=round(float(trainer.state.epoch or 0.0), 4),
        final_loss=logged[-1] if logged else None,
        first_loss=logged[0] if logged else None,
        train_loss=metrics.get("train_loss"),
        train_runtime_s=round(metrics["train_runtime"], 2),
        train_samples_per_second=metrics.get("train_samples_per_second"),
        train_steps_per_second=metrics.get("train_steps_per_second"),
        **data_stats,
        effective_batch_size=cfg.batch_size * cfg.grad_accum * args.world_size,
        world_size=args.world_size,
        device=str(args.device),
        precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        resumed_from=str(ckpt) if ckpt else None,
        r_max=space.r_max,
        groups=len(space.groups),
        adapter_modules=len(space.modules),
        trainable_parameters=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        adapter_parameters={
            "max": space.adapter_parameters(space.maximal()),
            "heuristic": space.adapter_parameters(space.heuristic()),
            "min": space.adapter_parameters(space.minimal()),
        },
        **peak_memory(),
        distill=_distill_record(trainer, cfg),
    )


def _distill_record(trainer, cfg: TrainConfig) -> dict[str, Any] | None:
    """The distillation settings and the first / last logged terms (``None`` without
    ``--distill``)."""
    if trainer.distiller is None:
        return None
    logged = [h for h in trainer.state.log_history if "kd" in h]
    keys = ("ce", "kd", "hidden")
    return {
        "teacher": trainer.distiller.source,
        "teacher_adapter": cfg.teacher_adapter,
        "weight": cfg.distill_weight,
        "temperature": cfg.distill_temperature,
        "hidden_weight": cfg.distill_hidden,
        "first": {k: logged[0][k] for k in keys if logged and k in logged[0]},
        "final": {k: logged[-1][k] for k in keys if logged and k in logged[-1]},
    }


def _write_output(trainer, adapter: SuperAdapter, cfg: TrainConfig, result: TrainResult) -> None:
    """Write the finished output folder in one rename (it replaces the checkpoints)."""
    logged = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    with atomic_output(cfg.output_path, "train", overwrite=True) as tmp:
        adapter.save(tmp)
        write_train_config(tmp, cfg)
        trainer.state.save_to_json(str(tmp / STATE_FILE))
        plot_loss([s for s, _ in logged], [v for _, v in logged], tmp / TRAIN_PLOT)
        result.write(tmp)


# ---------------------------------------------------------------------------- from a config


def _training_device(device: str) -> str:
    """The device to load on: under torchrun / accelerate each worker takes its local GPU."""
    if device == "auto" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return str(resolve_device(device))


def _check_model(cfg: TrainConfig) -> None:
    """What can be checked from the model's config alone, before its weights load: the context
    length, and the targets and groups against its structure."""
    from shears.models import max_positions, model_skeleton

    check_train_context(cfg, max_positions(cfg.model))
    skeleton = model_skeleton(cfg.model)
    if skeleton is not None:
        SearchSpace.build(skeleton, cfg.adapter, cfg.space)


def run(cfg: TrainConfig) -> TrainResult:
    """Load ``cfg.model`` (a ``shears prune`` folder or any model) and the data, then
    :func:`train_nls`. Bad data and an occupied output folder fail before the model loads."""
    from shears.models import load_model

    if output_state(cfg) == "done":
        logger.info("%s is already complete (--resume): nothing to do", cfg.output_dir)
        return TrainResult.read(cfg.output_path)
    _check_model(cfg)
    if cfg.distill:
        teacher_spec(cfg.model, cfg.teacher)  # no teacher: fail before anything loads
        if cfg.teacher_adapter:
            teacher_adapter_kind(cfg.teacher_adapter)
    examples = load_train_examples(cfg)
    if not examples:
        raise ShearsError(f"data {cfg.data!r} holds no examples")
    model, tok = load_model(cfg.model, cfg.dtype, _training_device(cfg.device))
    return train_nls(model, tok, examples, cfg, base_model=cfg.model)
