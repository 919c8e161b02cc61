"""NLS training of an elastic LoRA super-adapter: ``train_nls`` (library) and ``run_train``
(load model and data from a :class:`TrainConfig`, then train).

Output folder (written in one rename when training ends; before that it holds checkpoints):
the super-adapter at r_max in PEFT layout (``adapter_model.safetensors``, ``adapter_config.json``,
``search_space.json``, ``shears_adapter.json``), ``train_config.json``, ``trainer_state.json``,
``train_results.json`` and ``loss.png``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from shears.adapters.config import split_sections
from shears.adapters.elastic_lora import elastic_layers
from shears.adapters.io import SuperAdapter
from shears.adapters.search_space import SearchSpace
from shears.artifacts import (
    RESOLVED,
    RESOLVED_KEYS,
    TRAIN_CONFIG,
    TRAIN_PLOT,
    TRAIN_RESULTS,
    read_train_config,
    train_config_record,
    write_train_config,
)
from shears.config import local_spec_path, same_spec
from shears.context import check_train_context
from shears.errors import ShearsError
from shears.outputs import (
    atomic_output,
    check_output,
    claim,
    remove_own,
    temp_sibling,
)
from shears.train.config import RESUME_FREE_KEYS, TrainConfig
from shears.train.data import PadCollator, encode_examples, load_train_examples
from shears.train.plots import plot_loss
from shears.train.trainer import NLSCallback, NLSTrainer, NonFiniteLossError, checkpoint_problem
from shears.utils import atomic_write_json, peak_memory, resolve_device, set_seed

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
OWNED = (TRAIN_CONFIG, "checkpoint-*", "runs")  # what training writes in place


# ---------------------------------------------------------------------------- output folder


def last_checkpoint(out: Path, *, warn: bool = False, drop_broken: bool = False) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``out``, or ``None``.

    A checkpoint counts when its trainer state (written last) exists and every file passes
    :func:`checkpoint_problem` (a kill or a full disk can cut a file short); newer broken ones
    are skipped, with a WARNING when ``warn``, and deleted when ``drop_broken`` (a resumed run
    writes them again; stale files must not mix with the new ones).
    """
    if not out.is_dir():
        return None
    found = sorted(
        (
            (int(m.group(1)), d)
            for d in out.iterdir()
            if (m := _CKPT_RE.match(d.name)) and d.is_dir()
        ),
        reverse=True,
    )
    for _, d in found:
        problem = checkpoint_problem(d, STATE_FILE)
        if problem is None:
            return d
        if warn:
            logger.warning(
                "skipping checkpoint %s: %s; %s", d, problem,
                "deleting it and resuming from an earlier one" if drop_broken
                else "resuming from an earlier one",
            )  # fmt: skip
        if drop_broken:
            shutil.rmtree(d, ignore_errors=True)
    return None


def _check_resume_config(out: Path, cfg: TrainConfig) -> None:
    """A resumed run must train with the same settings, or it would not end where the first did.

    Paths compare resolved (``./m`` and ``/abs/m`` are the same model); the output folder is
    the one being resumed, whatever it is called now.
    """
    f, old = out / TRAIN_CONFIG, read_train_config(out)
    if old is None:
        return
    old = split_sections(old, warn=False)  # written before the adapter / space split
    new = train_config_record(cfg)
    old_paths, new_paths = old.pop(RESOLVED, None), new.pop(RESOLVED)
    for key in sorted(set(old) | set(new)):
        if key in RESUME_FREE_KEYS or key == "output_dir":
            continue
        if key in RESOLVED_KEYS:
            if isinstance(old_paths, dict) and key in old_paths:
                same = old_paths[key] == new_paths[key]
            else:  # written before paths were recorded resolved
                same = same_spec(old.get(key), new.get(key))
            if not same:
                was = old_paths.get(key) if isinstance(old_paths, dict) else old.get(key)
                raise ShearsError(
                    f"--resume with a different {key}: it was {was!r} in {str(f)!r}, now "
                    f"{new_paths[key]!r}; use the same {key} or --overwrite to start over"
                )
            continue
        if old.get(key) != new.get(key):
            raise ShearsError(
                f"--resume with a different setting: {key} was {old.get(key)!r} in {str(f)!r}, now "
                f"{new.get(key)!r}; use the same settings or --overwrite to start over"
            )


def train_inputs(cfg: TrainConfig) -> list[str]:
    """What ``shears train`` reads: the output folder must not overlap any of it."""
    return [cfg.model, cfg.data]


def output_state(cfg: TrainConfig) -> str:
    """``done`` (finished and ``resume``), ``resume``, ``replace`` (``--overwrite`` of an earlier
    output: the new one is trained beside it and swapped in at the end) or ``fresh``; raises a
    ShearsError for a folder that is not ours to write, or occupied without a flag."""
    out = check_output(cfg.output_dir, "train", resume=True, inputs=train_inputs(cfg))
    if out.is_dir() and not last_checkpoint(out) and not (out / TRAIN_RESULTS).is_file():
        remove_own(out, "train")  # a failed attempt that saved nothing of value
    if not out.is_dir() or not any(out.iterdir()):
        return "fresh"
    if cfg.overwrite:
        return "replace"
    if not cfg.resume:
        hint = "--resume to continue it or " if last_checkpoint(out) else ""
        raise ShearsError(
            f"output folder {cfg.output_dir!r} already exists (a `shears train` output); pass "
            f"{hint}--overwrite to replace it"
        )
    _check_resume_config(out, cfg)
    return "done" if (out / TRAIN_RESULTS).is_file() else "resume"


def _load_finished(adapter: SuperAdapter, out: Path) -> dict:
    """Load the saved super-adapter of a finished run into the injected layers; return results."""
    adapter.load_weights(out)
    return json.loads((out / TRAIN_RESULTS).read_text())


# ---------------------------------------------------------------------------- training


def _precision_flags(precision: str, device: torch.device) -> tuple[bool, bool]:
    """``(bf16, fp16)`` for the Trainer."""
    if precision == "auto":
        if device.type != "cuda":
            return False, False
        bf16 = torch.cuda.is_bf16_supported()
        return bf16, not bf16
    if precision == "fp16" and device.type != "cuda":
        raise ShearsError("precision fp16 needs a GPU; use fp32 or bf16 on CPU")
    return precision == "bf16", precision == "fp16"


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


def train_nls(
    model: nn.Module,
    tokenizer,
    train_examples: list[dict],
    cfg: TrainConfig,
    *,
    adapter: SuperAdapter | None = None,
    callbacks: Sequence = (),
    base_model: str | None = None,
) -> dict:
    """Train an elastic LoRA super-adapter on ``model`` with NLS and write ``cfg.output_dir``.

    ``model`` is changed in place: a super-adapter of ``cfg.adapter`` / ``cfg.space`` is injected
    (unless ``adapter`` is given: the one already in ``model``, e.g. from
    :meth:`SuperAdapter.load`) and trained; the base weights stay frozen and bit-identical.
    Every optimizer step activates ``space.sample(cfg.seed, step)``. ``train_examples`` are dicts
    with ``instruction`` / ``input`` / ``output``, encoded with ``cfg.prompt_style``.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects. Returns the results dict
    (also written to ``train_results.json``); the maximal sub-adapter is active afterwards.
    """
    from transformers import TrainingArguments

    from shears.models import max_positions

    out = cfg.output_path
    state = output_state(cfg)
    check_train_context(cfg, max_positions(model))  # before any example is tokenized
    set_seed(cfg.seed)  # adapter initialisation

    # -- the super-adapter (errors here come before any training)
    if adapter is None:
        if elastic_layers(model):
            raise ShearsError("the model already has elastic adapters; pass their SuperAdapter")
        base_dtype = next(model.parameters()).dtype
        dtype = torch.float32 if base_dtype in (torch.float16, torch.bfloat16) else None
        adapter = SuperAdapter.create(
            model, cfg.adapter, cfg.space, base_model=base_model, dtype=dtype
        )
    elif base_model is not None:  # the base to record in the folder
        adapter.base_model, adapter.base_model_path = base_model, local_spec_path(base_model)
    space, layers = adapter.space, adapter.layers
    if state == "done":
        logger.info("%s is already complete; nothing to train (loading its adapter)", out)
        space.apply(layers, space.maximal())
        return _load_finished(adapter, out)

    # -- data
    dataset, data_stats = encode_examples(
        tokenizer,
        train_examples,
        cfg.prompt_style,
        cfg.cutoff_len,
        cfg.train_on_inputs,
        cfg.add_eos,
    )
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # -- trainer (creating the arguments sets up the distributed state, if any)
    use_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    # the Trainer moves the model to the GPU when there is one (unless --device cpu)
    train_device = torch.device("cpu") if use_cpu else torch.device("cuda")
    bf16, fp16 = _precision_flags(cfg.precision, train_device)
    # checkpoints go to the output folder, or beside it when replacing an earlier output
    work = temp_sibling(out, "train") if state == "replace" else out
    args = TrainingArguments(
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
        bf16=bf16,
        fp16=fp16,
        **_checkpointing_args(cfg.gradient_checkpointing),
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=cfg.num_workers,
        use_cpu=use_cpu,
        ddp_find_unused_parameters=False,
        disable_tqdm=not logger.isEnabledFor(logging.INFO),
    )
    if args.should_save:
        claim(work, "train", OWNED)
        write_train_config(work, cfg)
    _barrier(args)
    ckpt = (
        last_checkpoint(out, warn=True, drop_broken=args.should_save) if state == "resume" else None
    )
    if state == "resume" and ckpt is None:
        logger.info("no checkpoint in %s yet; training from the start", out)

    sampler = NLSCallback(space, layers, cfg.seed)
    trainer = NLSTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PadCollator(pad_id),
        callbacks=[sampler, *callbacks],
    )
    use_cache = getattr(model.config, "use_cache", None)
    if use_cache is not None:
        model.config.use_cache = False
    logger.info(
        "NLS training: %d examples, %d groups, widths %s, r_max %d, effective batch %d",
        len(dataset),
        len(space.groups),
        space.groups[0].widths,
        space.r_max,
        cfg.batch_size * cfg.grad_accum * args.world_size,
    )
    t0 = time.time()
    try:
        result = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    except BaseException as exc:
        if args.should_save:
            _drop_failed_work(out, work)
        if not isinstance(exc, NonFiniteLossError):
            raise
        good = last_checkpoint(out)
        keep = (
            f"the last good checkpoint is {str(good)!r} (continue from it with --resume)"
            if good
            else "no checkpoint was written yet"
        )
        raise ShearsError(f"{exc}; training stopped, {keep}. Try a lower --lr.") from exc
    finally:
        if use_cache is not None:
            model.config.use_cache = use_cache
    elapsed = time.time() - t0

    results = _results(trainer, result.metrics, space, data_stats, cfg, args, ckpt, elapsed)
    if args.should_save:
        _write_outputs(trainer, adapter, cfg, results)
        if work != out:
            shutil.rmtree(work, ignore_errors=True)
    _barrier(args)
    logger.info("super-adapter written to %s (final loss %s)", out, results["final_loss"])
    return results


def _drop_failed_work(out: Path, work: Path) -> None:
    """After a failed training: drop a replacement's work folder (the earlier output stays), or
    a new output folder that holds no checkpoint yet (so a rerun needs no --overwrite)."""
    if work != out:
        shutil.rmtree(work, ignore_errors=True)
    elif not last_checkpoint(out):
        remove_own(out, "train")


def _barrier(args) -> None:
    if args.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _results(trainer, metrics, space, data_stats, cfg, args, ckpt, elapsed) -> dict:
    logged = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "global_steps": trainer.state.global_step,
        "epochs": round(float(trainer.state.epoch or 0.0), 4),
        "final_loss": logged[-1][1] if logged else None,
        "first_loss": logged[0][1] if logged else None,
        "train_loss": metrics.get("train_loss"),
        "train_runtime_s": round(metrics.get("train_runtime", elapsed), 2),
        "train_samples_per_second": metrics.get("train_samples_per_second"),
        "train_steps_per_second": metrics.get("train_steps_per_second"),
        **data_stats,
        "effective_batch_size": cfg.batch_size * cfg.grad_accum * args.world_size,
        "world_size": args.world_size,
        "device": str(args.device),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "resumed_from": str(ckpt) if ckpt else None,
        "r_max": space.r_max,
        "groups": len(space.groups),
        "adapter_modules": len(space.modules),
        "trainable_parameters": n_trainable,
        "adapter_parameters": {
            "max": space.adapter_parameters(space.maximal()),
            "heuristic": space.adapter_parameters(space.heuristic()),
            "min": space.adapter_parameters(space.minimal()),
        },
        **peak_memory(),
    }


def _write_outputs(trainer, adapter: SuperAdapter, cfg: TrainConfig, results: dict) -> None:
    out = cfg.output_path
    logged = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    with atomic_output(out, "train", overwrite=True) as tmp:
        adapter.save(tmp)
        write_train_config(tmp, cfg)
        trainer.state.save_to_json(str(tmp / STATE_FILE))
        plot_loss([s for s, _ in logged], [v for _, v in logged], tmp / TRAIN_PLOT)
        atomic_write_json(tmp / TRAIN_RESULTS, results)


# ---------------------------------------------------------------------------- from a config


def _training_device(device: str) -> str:
    """The device to load on: under torchrun / accelerate each worker takes its local GPU."""
    if device == "auto" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return str(resolve_device(device))


def run_train(cfg: TrainConfig) -> dict:
    """Load ``cfg.model`` (a ``shears prune`` folder or any model) and the data, then
    :func:`train_nls`. Bad data and an occupied output folder fail before the model loads."""
    from shears.models import load_model, max_positions, model_skeleton

    state = output_state(cfg)
    if state == "done":
        logger.info("%s is already complete (--resume): nothing to do", cfg.output_dir)
        return json.loads((cfg.output_path / TRAIN_RESULTS).read_text())
    check_train_context(cfg, max_positions(cfg.model))  # from the config alone, when readable
    skeleton = model_skeleton(cfg.model)
    if skeleton is not None:  # targets and groups against the structure, without the weights
        SearchSpace.build(skeleton, cfg.adapter, cfg.space)
    examples = load_train_examples(cfg)
    if not examples:
        raise ShearsError(f"data {cfg.data!r} holds no examples")
    model, tok = load_model(cfg.model, cfg.dtype, _training_device(cfg.device))
    return train_nls(model, tok, examples, cfg, base_model=cfg.model)


__all__ = ["TrainConfig", "run_train", "train_nls", "last_checkpoint"]
