"""The inner maximisation of TRADES (Zhang et al. 2019, "Theoretically principled trade-off between
robustness and accuracy"): L∞ PGD on KL(f(x) || f(x_adv)) from x + 0.001·N(0, I). It needs no label (y is
accepted for the common signature and ignored); the training loss is CE(f(x), y) + β·KL(f(x) || f(x_adv)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks.base import Attack, check_positive
from freqmaps.attacks.pgd import ascent_step


class TRADES(Attack):
    """Args: eps (L∞ radius, pixel units), steps, step_size (the paper's CIFAR-10 values by default),
    channels_last (hand the model channels-last input, see `Attack`)."""

    def __init__(self, eps: float = 8 / 255, steps: int = 10, step_size: float = 0.007,
                 channels_last: bool = True) -> None:
        check_positive(eps=eps, steps=steps, step_size=step_size)
        self.eps, self.steps, self.step_size, self.channels_last = eps, steps, step_size, channels_last

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            p_clean = F.softmax(model(x).float(), dim=1)
        x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0, 1)
        for _ in range(self.steps):
            x_adv = x_adv.detach().requires_grad_()
            loss = F.kl_div(F.log_softmax(model(x_adv).float(), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = ascent_step(x_adv.detach(), grad, x, self.eps, self.step_size, "linf")
        return x_adv

    def __repr__(self) -> str:
        return (f"TRADES(eps={self.eps!r}, steps={self.steps!r}, step_size={self.step_size!r}, "
                f"channels_last={self.channels_last!r})")


def trades_loss(logits: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """CE(logits, y) + beta * KL(softmax(logits) || softmax(logits_adv)), batch mean. logits*: (B, K)."""
    kl = F.kl_div(F.log_softmax(logits_adv.float(), 1), F.softmax(logits.float(), 1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * kl
