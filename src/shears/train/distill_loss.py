"""The distillation losses (pure tensor functions): logit KD and the normalised hidden-state loss
("SquareHead", Kurtic et al. 2023), both over the tokens that carry the causal-LM loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def loss_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(batch, seq-1)`` bool: the positions whose next-token prediction carries the CE loss
    (``labels[:, 1:] != -100``, shifted like the causal-LM loss)."""
    return labels[:, 1:] != -100


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, the mean over the CE tokens (0 when there
    are none). Logits ``(batch, seq, vocab)``, labels ``(batch, seq)``; computed in fp32."""
    mask = loss_mask(labels)
    if not mask.any():
        return student_logits.sum() * 0.0
    s = student_logits[:, :-1][mask].float() / temperature  # (tokens, vocab)
    t = teacher_logits[:, :-1][mask].float() / temperature
    kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="none")
    return kl.sum(-1).mean() * temperature**2


def hidden_loss(
    student_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
    teacher_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
    labels: torch.Tensor,
) -> torch.Tensor:
    """``sum over blocks of MSE(h_s, h_t) / MSE(h_t, 0)`` over the CE tokens (SquareHead, each
    block normalised by its teacher's energy). Hidden states ``(batch, seq, hidden)``, one per
    decoder block."""
    mask = loss_mask(labels)
    total = student_hidden[0].sum() * 0.0
    if not mask.any():
        return total
    for hs, ht in zip(student_hidden, teacher_hidden, strict=True):
        s, t = hs[:, :-1][mask].float(), ht[:, :-1][mask].float()
        total = total + (s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)
    return total


def token_count(labels: torch.Tensor) -> int:
    """The number of CE tokens in ``labels`` ``(batch, seq)``."""
    return int(loss_mask(labels).sum())
