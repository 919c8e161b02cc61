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
    return kd_tokens(student_logits[:, :-1][mask], teacher_logits[:, :-1][mask], temperature)


def kd_tokens(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """:func:`kd_loss` on logits already gathered at the CE tokens, ``(tokens, vocab)`` each (0
    when there are none)."""
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    s = F.log_softmax(student_logits.float() / temperature, -1)
    with torch.no_grad():
        t = F.log_softmax(teacher_logits.float() / temperature, -1)
    kl = F.kl_div(s, t, log_target=True, reduction="none")
    return kl.sum(-1).mean() * temperature**2


def gather_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` ``(batch, seq, ...)`` at the CE tokens (``mask`` from :func:`loss_mask`, ``(batch,
    seq-1)``): ``(tokens, ...)``, in the order of the causal-LM loss."""
    return x[:, :-1][mask]


def hidden_loss(
    student_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
    teacher_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
    labels: torch.Tensor,
) -> torch.Tensor:
    """``sum over blocks of MSE(h_s, h_t) / MSE(h_t, 0)`` over the CE tokens (SquareHead, each
    block normalised by its teacher's energy). Hidden states ``(batch, seq, hidden)``, one per
    decoder block; a teacher block may also come already gathered, ``(tokens, hidden)``."""
    mask = loss_mask(labels)
    if not mask.any():
        return student_hidden[0].sum() * 0.0
    return hidden_tokens(
        [gather_tokens(h, mask) for h in student_hidden],
        [h if h.dim() == 2 else gather_tokens(h, mask) for h in teacher_hidden],
    )


def hidden_tokens(
    student_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
    teacher_hidden: tuple[torch.Tensor, ...] | list[torch.Tensor],
) -> torch.Tensor:
    """:func:`hidden_loss` on hidden states already gathered at the CE tokens, ``(tokens,
    hidden)`` per block (0 when there are none)."""
    total = student_hidden[0].sum() * 0.0
    if student_hidden[0].shape[0] == 0:
        return total
    for hs, ht in zip(student_hidden, teacher_hidden, strict=True):
        s, t = hs.float(), ht.float()
        total = total + (s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)
    return total


def token_count(labels: torch.Tensor) -> int:
    """The number of CE tokens in ``labels`` ``(batch, seq)``."""
    return int(loss_mask(labels).sum())
