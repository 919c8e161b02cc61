"""The dense teacher of ``shears train --distill``: where it is (``--teacher`` or the prune
output's ``prune_config.json``), loading it frozen, and :class:`Distiller`, its loss state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from shears.artifacts import PRUNE_CONFIG, RESOLVED
from shears.config import recorded_path
from shears.errors import ShearsError
from shears.inputs import read_json_file
from shears.train.distill_loss import (
    gather_tokens,
    hidden_tokens,
    kd_tokens,
    loss_mask,
)

# config fields that change a causal LM's logits or loss beyond ``head(last hidden state)`` and
# the plain shifted CE: softcapping, logit scaling, MoE router losses. A model with any of them
# on takes the full-logit path.
_SOFTCAPS = ("final_logit_softcapping", "logit_softcapping")
_SCALES = ("logit_scale", "logits_scaling", "output_logits_scale")


def teacher_spec(model: str, teacher: str | None) -> str:
    """The teacher to load: ``teacher`` when given, else the dense model that the ``shears prune``
    folder ``model`` came from (its ``prune_config.json``, the recorded absolute path first)."""
    if teacher:
        return teacher
    f = Path(model) / PRUNE_CONFIG
    if not f.is_file():
        raise ShearsError(
            f"--distill needs a teacher: {model!r} is not a `shears prune` output (no "
            f"{PRUNE_CONFIG}); name the dense model with --teacher"
        )
    raw = read_json_file(f, "pruning config", expect=dict)
    resolved = raw.get(RESOLVED) if isinstance(raw.get(RESOLVED), dict) else {}
    spec = recorded_path(raw.get("model"), resolved.get("model"))
    if not isinstance(spec, str) or not spec:
        raise ShearsError(f"--distill: {str(f)!r} names no model; name it with --teacher")
    return spec


def freeze(teacher: nn.Module) -> nn.Module:
    """``teacher`` in eval mode with every parameter frozen (returned for chaining)."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_adapter_kind(adapter: str) -> str:
    """:func:`shears.adapters.io.adapter_kind` of ``--teacher-adapter`` (``super``: a ``shears
    train`` folder, e.g. the dense LoRA of ``--baselines``; ``peft``), its errors naming the flag."""
    from shears.adapters.io import adapter_kind

    try:
        return adapter_kind(adapter)
    except ShearsError as exc:
        raise ShearsError(f"--teacher-adapter: {exc}") from None


def load_teacher(spec: str, adapter: str | None, dtype: str, device: str) -> nn.Module:
    """Load the teacher ``spec`` on ``device`` with ``dtype`` (the student's rules), frozen.
    ``adapter`` is merged into it: a PEFT adapter, or a Shears super-adapter at its maximal
    sub-adapter (a fixed-rank LoRA trained by ``shears train`` has only that one)."""
    from shears.models import load_model

    kind = teacher_adapter_kind(adapter) if adapter else None
    model, _ = load_model(spec, dtype, device)
    if kind == "super":
        from shears.adapters.io import SuperAdapter
        from shears.export.merge import merge_adapter

        sup = SuperAdapter.load(model, adapter, dropout=0.0)
        sup.space.apply(sup.layers, sup.space.maximal())
        merge_adapter(model)
    elif kind == "peft":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return freeze(model)


def head_split(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """``(decoder body, output head)`` of a Hugging Face causal LM whose logits are exactly
    ``head(body(...).last_hidden_state)`` and whose loss is the plain shifted CE, so that the
    head can be applied at the CE tokens only; ``None`` for anything else (wrapped or
    multimodal models, logit softcapping or scaling, router losses, a custom loss type): those
    take the full-logit path."""
    from transformers import PreTrainedModel

    name = type(model).__name__
    if not isinstance(model, PreTrainedModel) or not name.endswith(("ForCausalLM", "LMHeadModel")):
        return None  # a wrapper (DDP, PEFT), a multimodal or a seq2seq model
    cfg = model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    configs = (model.config, cfg)
    if any(getattr(c, k, None) is not None for c in configs for k in _SOFTCAPS):
        return None
    if any(getattr(c, k, None) not in (None, 1, 1.0) for c in configs for k in _SCALES):
        return None
    if any(getattr(c, "output_router_logits", False) for c in configs):
        return None
    if getattr(model.config, "loss_type", None) not in (None, "ForCausalLM"):
        return None
    try:
        body, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if body is None or head is None or body is model:
        return None
    return body, head


def _feed(inputs: dict[str, Any]) -> dict[str, Any]:
    """The model inputs of a batch, without the loss's own keys."""
    return {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}


@dataclass
class Gathered:
    """Outputs at the CE tokens only: ``logits`` ``(tokens, vocab)``, ``hidden_states`` (the
    embeddings, then one per decoder block: ``(tokens, hidden)`` for the teacher, full ``(batch,
    seq, hidden)`` for the student, or ``None``), ``mask`` the :func:`loss_mask`."""

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    mask: torch.Tensor
    loss: torch.Tensor | None = None


@dataclass
class Distiller:
    """The frozen teacher and the loss weights: ``(1 - weight) * CE + weight * KD + hidden * H``.

    With ``gather`` (the default) the teacher's output head runs at the CE tokens only (the
    shifted ``labels != -100``), and :meth:`student_loss` does the same for the student, where
    the model allows it (:func:`head_split`); the losses are those of the full-logit path."""

    teacher: nn.Module
    weight: float = 0.5
    temperature: float = 2.0
    hidden: float = 0.0
    source: str | None = None  # the teacher's spec, when loaded from one
    gather: bool = True

    def _head_split(self, model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
        return head_split(model) if self.gather else None

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]):
        """The teacher's forward pass (no grad) on the student's batch: a :class:`Gathered` at
        the CE tokens of ``inputs["labels"]`` when possible, else the model's full output."""
        feed = _feed(inputs)
        split = self._head_split(self.teacher) if "labels" in inputs else None
        with torch.no_grad():
            if split is None:
                return self.teacher(**feed, output_hidden_states=self.hidden > 0)
            body, head = split
            mask = loss_mask(inputs["labels"])
            out = body(**feed, output_hidden_states=self.hidden > 0)
            hidden = None
            if self.hidden > 0:
                hidden = tuple(gather_tokens(h, mask) for h in out.hidden_states)
            logits = head(gather_tokens(out.last_hidden_state, mask))
            return Gathered(logits, hidden, mask)

    def student_loss(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch=None
    ) -> tuple[torch.Tensor, Gathered] | None:
        """The student's forward with its output head at the CE tokens only: ``(ce, out)``, the
        CE as Hugging Face's causal-LM loss computes it (the sum over the label tokens divided
        by ``num_items_in_batch`` when given, else their mean) and a :class:`Gathered` for
        :meth:`terms`; ``None`` when ``model`` does not allow it (then use its full output)."""
        split = self._head_split(model)
        if split is None or "labels" not in inputs:
            return None
        body, head = split
        labels = inputs["labels"]
        mask = loss_mask(labels)
        out = body(**_feed(inputs), output_hidden_states=self.hidden > 0)
        logits = head(gather_tokens(out.last_hidden_state, mask))
        target = labels[:, 1:][mask].to(logits.device)
        if num_items_in_batch is None:
            ce = F.cross_entropy(logits.float(), target, reduction="mean")
        else:
            ce = F.cross_entropy(logits.float(), target, reduction="sum")
            if torch.is_tensor(num_items_in_batch):
                num_items_in_batch = num_items_in_batch.to(ce.device)
            ce = ce / num_items_in_batch
        hidden = out.hidden_states if self.hidden > 0 else None
        return ce, Gathered(logits, hidden, mask, ce)

    def terms(self, student_out, teacher_out, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kd`` (and ``hidden`` when on): the unweighted distillation terms of one batch, each
        a mean over its CE tokens; hidden states of the decoder blocks (embeddings left out).
        Either output may be the model's full one or a :class:`Gathered`."""
        mask = loss_mask(labels)
        s_logits, t_logits = student_out.logits, teacher_out.logits
        if not isinstance(student_out, Gathered):
            s_logits = gather_tokens(s_logits, mask)
        if not isinstance(teacher_out, Gathered):
            t_logits = gather_tokens(t_logits, mask)
        out = {"kd": kd_tokens(s_logits, t_logits, self.temperature)}
        if self.hidden > 0:
            s_hidden, t_hidden = student_out.hidden_states[1:], teacher_out.hidden_states[1:]
            if not isinstance(teacher_out, Gathered):
                t_hidden = [gather_tokens(h, mask) for h in t_hidden]
            s_hidden = [gather_tokens(h, mask) for h in s_hidden]
            out["hidden"] = hidden_tokens(s_hidden, t_hidden)
        return out

    def combine(self, ce: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss from the CE and the distillation terms (on one scale)."""
        loss = (1 - self.weight) * ce + self.weight * terms["kd"]
        if "hidden" in terms:
            loss = loss + self.hidden * terms["hidden"]
        return loss
