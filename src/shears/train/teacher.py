"""The dense teacher of ``shears train --distill``: where it is (``--teacher`` or the prune
output's ``prune_config.json``), loading it frozen, and :class:`Distiller`, its loss state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shears.artifacts import PRUNE_CONFIG, RESOLVED
from shears.config import recorded_path
from shears.errors import ShearsError
from shears.inputs import read_json_file
from shears.train.distill_loss import hidden_loss, kd_loss


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


def load_teacher(spec: str, adapter: str | None, dtype: str, device: str) -> nn.Module:
    """Load the teacher ``spec`` (``adapter``: a PEFT adapter merged into it) on ``device`` with
    ``dtype`` (the student's rules), frozen."""
    from shears.models import load_model

    model, _ = load_model(spec, dtype, device)
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ShearsError(
                f"--teacher-adapter {adapter!r} is not a PEFT adapter folder (no adapter_config.json)"
            )
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return freeze(model)


@dataclass
class Distiller:
    """The frozen teacher and the loss weights: ``(1 - weight) * CE + weight * KD + hidden * H``."""

    teacher: nn.Module
    weight: float = 0.5
    temperature: float = 2.0
    hidden: float = 0.0
    source: str | None = None  # the teacher's spec, when loaded from one

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]):
        """The teacher's forward pass (no grad) on the student's batch (labels left out)."""
        feed = {k: v for k, v in inputs.items() if k != "labels"}
        with torch.no_grad():
            return self.teacher(**feed, output_hidden_states=self.hidden > 0)

    def terms(self, student_out, teacher_out, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``kd`` (and ``hidden`` when on): the unweighted distillation terms of one batch, each
        a mean over its CE tokens; hidden states of the decoder blocks (embeddings left out)."""
        out = {"kd": kd_loss(student_out.logits, teacher_out.logits, labels, self.temperature)}
        if self.hidden > 0:
            out["hidden"] = hidden_loss(
                student_out.hidden_states[1:], teacher_out.hidden_states[1:], labels
            )
        return out

    def combine(self, ce: torch.Tensor, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss from the CE and the distillation terms (on one scale)."""
        loss = (1 - self.weight) * ce + self.weight * terms["kd"]
        if "hidden" in terms:
            loss = loss + self.hidden * terms["hidden"]
        return loss
