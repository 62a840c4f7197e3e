"""Targeted PGD: descend the cross-entropy towards a chosen class (Madry et al. 2018; the targeted transfer attack of
Springer, Mitchell & Kenyon 2021).

`attack(model, x, target) -> x_adv`: the third argument holds the *target* classes, not the true labels; each
step is x ← Π(x − α·s(∇ CE(f(x), target))) onto B_ε(x0) ∩ [0,1], with s the sign (L∞) or the L2-normalised gradient.
Success is argmax f(x_adv) == target. `targeted = True` marks it for callers that check which kind they hold.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks.pgd import PGD, ascent_step, random_ball


class TargetedPGD(PGD):
    """PGD towards target classes; the arguments of `PGD` (eps, norm, steps, step_size, random_start,
    channels_last), each restart-free: every image takes all steps and the last iterate is returned."""

    targeted = True

    def __init__(self, eps: float = 8 / 255, norm: str = "linf", steps: int = 40, step_size: float | None = None,
                 random_start: bool = True, channels_last: bool = True) -> None:
        super().__init__(eps=eps, norm=norm, steps=steps, step_size=step_size, random_start=random_start,
                         channels_last=channels_last)

    def perturb(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x_adv = random_ball(x, self.eps, self.norm) if self.random_start else x
        for _ in range(self.steps):
            x_adv = x_adv.detach().requires_grad_()
            loss = F.cross_entropy(model(x_adv).float(), target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = ascent_step(x_adv.detach(), -grad, x, self.eps, self.step_size, self.norm)
        return x_adv

    def __repr__(self) -> str:
        return (f"TargetedPGD(eps={self.eps!r}, norm={self.norm!r}, steps={self.steps!r}, "
                f"step_size={self.step_size!r}, random_start={self.random_start!r}, "
                f"channels_last={self.channels_last!r})")
