"""The Hugging Face Trainer, taught NLS: a callback samples one sub-adapter per optimizer step,
checkpoints hold only the adapter, and a NaN/inf loss stops training at once.

No distributed code of our own: ``accelerate launch`` / ``torchrun`` scale this out (DDP, FSDP,
DeepSpeed) through the Trainer. The sampled config is a pure function of ``(seed, global_step)``,
so every worker activates the same sub-adapter, and a resumed run continues the same sequence.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback

from shears.adapters.elastic_lora import ElasticLoRALinear
from shears.adapters.search_space import SearchSpace
from shears.precision import autocast
from shears.train.distill_loss import token_count
from shears.train.sharding import copy_into, setup_fsdp, trainable_state
from shears.train.teacher import Distiller

logger = logging.getLogger(__name__)

ADAPTER_CKPT = "elastic_adapter.safetensors"


def _safetensors_problem(path: Path) -> str | None:
    """Why a safetensors file is not whole (header unreadable, data cut short), or ``None``."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "cut short"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return "cut short (in its header)"
        try:
            header = json.loads(fh.read(n))
            end = max(
                (int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"),
                default=0,
            )
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return "its header is not valid"
    if 8 + n + end != size:
        return f"{size} bytes where its header needs {8 + n + end} (cut short?)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why a ``torch.save`` file (a zip archive) is not whole, or ``None``: the archive's
    directory (at its end) must be readable, and every record's CRC must match."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"not a complete torch archive ({exc})"
    return f"record {bad!r} is corrupt" if bad is not None else None


def checkpoint_problem(
    ckpt: str | os.PathLike, state_file: str = "trainer_state.json"
) -> str | None:
    """Why the checkpoint folder ``ckpt`` cannot be resumed from, or ``None`` if it is whole.

    Cheap checks of every file the Trainer reads back: the trainer state (written last) exists
    and parses, JSON files parse, safetensors headers match their file sizes, torch archives
    (optimizer, scheduler, RNG states, ...) have an intact directory and CRCs.
    """
    d = Path(ckpt)
    try:
        if not (d / state_file).is_file():
            return f"{state_file} is missing (killed while saving?)"
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            what = None
            if f.stat().st_size == 0:
                what = "empty"
            elif f.suffix == ".json":
                try:
                    data = json.loads(f.read_text())
                except (UnicodeDecodeError, json.JSONDecodeError):
                    what = "not valid JSON (cut short?)"
                else:
                    if f.name == state_file and not isinstance(data, dict):
                        what = "not a trainer state"
            elif f.suffix == ".safetensors":
                what = _safetensors_problem(f)
            elif f.suffix in (".pt", ".pth", ".bin"):
                what = _torch_file_problem(f)
            if what:
                return f"{f.name}: {what}"
    except OSError as exc:
        return f"unreadable ({exc})"
    return None


class NonFiniteLossError(RuntimeError):
    """Raised (on every worker) when a training loss is NaN or infinite."""

    def __init__(self, step: int, loss: float) -> None:
        what = "not finite on another worker" if math.isfinite(loss) else f"{loss}"
        super().__init__(f"the training loss is {what} at optimizer step {step + 1}")
        self.step = step
        self.loss = loss


class NLSCallback(TrainerCallback):
    """Before every optimizer step, activate ``space.sample(seed, global_step, max_prob)`` on
    ``layers``.

    ``history`` keeps ``(step, config)`` of the steps this process ran (for tests and logs).
    At the end of training the maximal sub-adapter is active again.
    """

    def __init__(
        self,
        space: SearchSpace,
        layers: dict[str, ElasticLoRALinear],
        seed: int,
        max_prob: float = 0.0,
    ) -> None:
        self.space = space
        self.layers = layers
        self.seed = seed
        self.max_prob = max_prob
        self.history: list[tuple[int, dict[str, int]]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        config = self.space.sample(self.seed, state.global_step, self.max_prob)
        self.space.apply(self.layers, config)
        self.history.append((state.global_step, config))

    def on_train_end(self, args, state, control, **kwargs):
        self.space.apply(self.layers, self.space.maximal())


def mixed_dtype(args) -> torch.dtype | None:
    """The autocast dtype of the Trainer's arguments ``args`` (``None``: full precision)."""
    return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None


class NLSTrainer(Trainer):
    """``Trainer`` whose checkpoints hold only the trainable (adapter) tensors and which stops on a
    non-finite loss before the optimizer can apply it. With a ``distiller`` the loss mixes CE
    with distillation from its frozen teacher, and ``ce`` / ``kd`` / ``hidden`` are logged with
    ``loss``."""

    def __init__(self, *args, distiller: Distiller | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.distiller = distiller
        self._terms: dict[str, torch.Tensor] = {}  # summed since the last log
        self._terms_step = 0

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        self.is_fsdp_enabled = setup_fsdp(self.accelerator)

    def autocast_smart_context_manager(self, cache_enabled: bool | None = True):
        """With a teacher, the whole loss under the run's mixed precision: accelerate autocasts
        the student's ``forward`` only, not the teacher nor the student's body and head called at
        the CE tokens (:meth:`Distiller.student_loss`)."""
        if self.distiller is None:
            return super().autocast_smart_context_manager(cache_enabled)
        return autocast(mixed_dtype(self.args), self.args.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        d = self.distiller
        if d is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        step = None
        if self.label_smoother is None and self.compute_loss_func is None:
            # the student's output head at the CE tokens only (None: a wrapped model or a logit
            # quirk, which take the model's own full-logit loss below)
            n = num_items_in_batch if self.model_accepts_loss_kwargs else None
            step = d.student_loss(model, inputs, n)
        if step is None:
            feed = {**inputs, "output_hidden_states": True} if d.hidden > 0 else inputs
            ce, out = super().compute_loss(model, feed, True, num_items_in_batch)
        else:
            ce, out = step
            ce = ce * self._device_scale(num_items_in_batch)
        scale = self._token_scale(inputs["labels"], num_items_in_batch)
        terms = {
            k: v * scale
            for k, v in d.terms(out, d.teacher_outputs(inputs), inputs["labels"]).items()
        }
        loss = d.combine(ce, terms)
        self._record({"ce": ce, **terms}, num_items_in_batch)
        return (loss, out) if return_outputs else loss

    def _device_scale(self, num_items_in_batch) -> int:
        """The factor Trainer.compute_loss applies to the model's own loss when tokens are
        averaged across devices (1 otherwise), for the CE computed here from gathered logits."""
        if not (
            self.args.average_tokens_across_devices and self._scaled_for_ga(num_items_in_batch)
        ):
            return 1
        if self.args.n_gpu > 1:
            return self.args.n_gpu
        return self.accelerator.num_processes // self.get_tp_size()

    def _scaled_for_ga(self, num_items_in_batch) -> bool:
        """Whether the CE of a micro-batch is already normalised over the accumulated batch."""
        return bool(self.model_accepts_loss_kwargs and num_items_in_batch is not None)

    def _token_scale(self, labels: torch.Tensor, num_items_in_batch) -> float:
        """The factor that puts a per-token mean of this micro-batch on the CE's scale (its share
        of the accumulated batch's tokens when the CE is normalised over them)."""
        if not self._scaled_for_ga(num_items_in_batch):
            return 1.0
        scale = token_count(labels) / max(float(num_items_in_batch), 1.0)
        if self.args.average_tokens_across_devices and self.args.n_gpu <= 1:
            scale *= self.accelerator.num_processes // self.get_tp_size()
        return scale

    def _record(self, terms: dict[str, torch.Tensor], num_items_in_batch) -> None:
        """Add this micro-batch's terms, on the scale of the logged loss."""
        if not self._terms:
            self._terms_step = self.state.global_step
        div = (
            1
            if self._scaled_for_ga(num_items_in_batch)
            else self.current_gradient_accumulation_steps
        )
        for k, v in terms.items():
            self._terms[k] = self._terms.get(k, 0.0) + v.detach().float() / div

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._terms and "loss" in logs:
            steps = max(self.state.global_step - self._terms_step, 1)
            logs.update({k: round(float(v) / steps, 4) for k, v in self._terms.items()})
            self._terms = {}
        super().log(logs, start_time)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        bad = torch.tensor(
            0.0 if torch.isfinite(loss).all() else 1.0, device=loss.device, dtype=torch.float32
        )
        if self.args.world_size > 1 and torch.distributed.is_initialized():
            # every worker must stop together, or the others hang in the next collective
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if bad.item() > 0:
            raise NonFiniteLossError(self.state.global_step, float(loss.detach().float().cpu()))
        return loss

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not self.is_fsdp_enabled:
            return super().save_model(output_dir, _internal_call)
        # every rank gathers the sharded adapter (not the frozen base), the main process writes it
        model = self.accelerator.unwrap_model(self.model)
        self._save(output_dir, state_dict=trainable_state(model))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        if state_dict is not None:  # FSDP / DeepSpeed gathered a full state dict
            names = {n for n, p in model.named_parameters() if p.requires_grad}
            tensors = {k: v.contiguous().cpu() for k, v in state_dict.items() if k in names}
        else:
            tensors = trainable_state(model)
        save_file(tensors, os.path.join(output_dir, ADAPTER_CKPT), metadata={"format": "pt"})

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not self.is_fsdp_enabled:
            return super()._save_optimizer_and_scheduler(output_dir)
        # the adapter is in ADAPTER_CKPT already: no FSDP model file (a copy of the whole base)
        from accelerate.utils import save_fsdp_optimizer
        from transformers.trainer import SCHEDULER_NAME

        plugin = self.accelerator.state.fsdp_plugin
        save_fsdp_optimizer(plugin, self.accelerator, self.optimizer, self.model, output_dir)
        if self.args.should_save:
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        path = os.path.join(resume_from_checkpoint, ADAPTER_CKPT)
        if not os.path.isfile(path):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        state = load_file(path)
        params = dict(model.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in state]
        unknown = [n for n in state if n not in params]
        if missing or unknown:
            raise RuntimeError(
                f"checkpoint {resume_from_checkpoint} does not fit the adapter "
                f"(missing {missing[:2]}, unknown {unknown[:2]})"
            )
        for n, t in state.items():
            copy_into(params[n], t)  # a shard of it under FSDP
        logger.info("resumed adapter weights from %s", resume_from_checkpoint)
