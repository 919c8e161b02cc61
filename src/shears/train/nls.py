"""One NLS training session on the Hugging Face Trainer: :func:`start` (the Trainer's arguments
from a :class:`TrainConfig`, the work folder claimed, the checkpoint to resume from) and
:func:`fit` (one sampled sub-adapter per optimizer step; a NaN/inf loss becomes a one-line error
naming the last good checkpoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from shears.adapters.io import SuperAdapter
from shears.artifacts import write_train_config
from shears.errors import ShearsError
from shears.outputs import claim
from shears.precision import autocast_dtype
from shears.train.config import TrainConfig
from shears.train.data import EncodedDataset, PadCollator
from shears.train.folder import OWNED, drop_failed_work, last_checkpoint, work_folder
from shears.train.teacher import Distiller
from shears.train.trainer import NLSCallback, NLSTrainer, NonFiniteLossError

if TYPE_CHECKING:
    from transformers import TrainingArguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    """Where and how one run trains: the output folder, the folder its checkpoints go to (the
    output folder, or a sibling when replacing an earlier output), the Trainer's arguments and
    the checkpoint it resumes from."""

    out: Path
    work: Path
    args: TrainingArguments
    resume_from: Path | None = None


def _device_flags(cfg: TrainConfig) -> dict[str, bool]:
    """``use_cpu``, ``bf16`` and ``fp16`` for the Trainer (which moves the model to the GPU when
    there is one, unless ``--device cpu``). ``auto`` on CPU is bf16 autocast with fp32 master
    weights where :func:`shears.precision.autocast_dtype` allows it for ``train``."""
    use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.precision == "auto" and use_cpu:
        bf16 = autocast_dtype("auto", torch.device("cpu"), "train") is not None
        return {"use_cpu": True, "bf16": bf16, "fp16": False}
    if cfg.precision == "auto":
        bf16 = torch.cuda.is_bf16_supported()
        return {"use_cpu": False, "bf16": bf16, "fp16": not bf16}
    if cfg.precision == "fp16" and use_cpu:
        raise ShearsError("precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return {"use_cpu": use_cpu, "bf16": cfg.precision == "bf16", "fp16": cfg.precision == "fp16"}


def _checkpointing_args(enabled: bool) -> dict:
    """Activation checkpointing flags under the name this transformers version uses."""
    import dataclasses as dc

    from transformers import TrainingArguments

    names = {f.name for f in dc.fields(TrainingArguments)}
    key = (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else "gradient_checkpointing"
    )
    out = {key: enabled}
    if enabled:  # non-reentrant: works with frozen embeddings (inputs need no grad)
        out[f"{key}_kwargs"] = {"use_reentrant": False}
    return out


def training_arguments(cfg: TrainConfig, work: Path, device: dict[str, bool]) -> TrainingArguments:
    """The Trainer's arguments for ``cfg``, checkpointing to ``work``, on ``device`` (from
    :func:`_device_flags`). Creating them sets up the distributed state, if any."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch",
        logging_steps=cfg.logging_steps,
        logging_nan_inf_filter=False,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        **device,
        **_checkpointing_args(cfg.gradient_checkpointing),
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.num_workers,
        ddp_find_unused_parameters=False,
        disable_tqdm=not logger.isEnabledFor(logging.INFO),
    )


def start(cfg: TrainConfig, state: str) -> Session:
    """Set up a run in ``state`` (``fresh``, ``resume`` or ``replace``): its arguments; the main
    process claims the work folder and records the config there; then, when resuming, the newest
    complete checkpoint (broken newer ones are dropped)."""
    out, device = cfg.output_path, _device_flags(cfg)  # fp16 on CPU fails before any folder
    work = work_folder(out, state)
    args = training_arguments(cfg, work, device)
    if args.should_save:
        claim(work, "train", OWNED)
        write_train_config(work, cfg)
    barrier(args)
    ckpt = (
        last_checkpoint(out, warn=True, drop_broken=args.should_save) if state == "resume" else None
    )
    if state == "resume" and ckpt is None:
        logger.info("no checkpoint in %s yet; training from the start", out)
    return Session(out, work, args, ckpt)


def fit(
    model: nn.Module,
    dataset: EncodedDataset,
    collator: PadCollator,
    adapter: SuperAdapter,
    cfg: TrainConfig,
    session: Session,
    callbacks: Sequence = (),
    distiller: Distiller | None = None,
) -> tuple[NLSTrainer, dict[str, Any]]:
    """Train ``adapter`` (injected in ``model``) on ``dataset`` (distilling from ``distiller``'s
    teacher when given); return the trainer and its metrics (``train_runtime`` at least). A
    failure drops what the run wrote that has no value."""
    space, args = adapter.space, session.args
    if distiller is not None:
        distiller.teacher.to(args.device)
    trainer = NLSTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=[NLSCallback(space, adapter.layers, cfg.seed, cfg.nls_max_prob), *callbacks],
        distiller=distiller,
    )
    use_cache = getattr(model.config, "use_cache", None)
    if use_cache is not None:
        model.config.use_cache = False
    logger.info(
        "NLS training: %d examples, %d groups, widths %s, r_max %d, effective batch %d",
        len(dataset), len(space.groups), space.groups[0].widths, space.r_max,
        cfg.batch_size * cfg.grad_accum * args.world_size,
    )  # fmt: skip
    if cfg.nls_max_prob:
        logger.info("a step trains the maximal sub-adapter with probability %g", cfg.nls_max_prob)
    t0, ckpt = time.time(), session.resume_from
    try:
        result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    except BaseException as exc:
        if args.should_save:
            drop_failed_work(session.out, session.work)
        if not isinstance(exc, NonFiniteLossError):
            raise
        raise _stopped(exc, session.out) from exc
    finally:
        if use_cache is not None:
            model.config.use_cache = use_cache
    return trainer, {"train_runtime": time.time() - t0, **result.metrics}


def _stopped(exc: NonFiniteLossError, out: Path) -> ShearsError:
    """The one-line error of a NaN/inf loss: where to continue from."""
    good = last_checkpoint(out)
    keep = (
        f"the last good checkpoint is {str(good)!r} (continue from it with --resume)"
        if good
        else "no checkpoint was written yet"
    )
    return ShearsError(f"{exc}; training stopped, {keep}. Try a lower --lr.")


def barrier(args: TrainingArguments) -> None:
    """Wait for every worker (distributed runs only)."""
    if args.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()
