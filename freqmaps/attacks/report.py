"""How an attack went: success rate, perturbation norms of the successful images, adversarial labels."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from freqmaps.attacks.base import attacking, lp_norms
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images


@dataclass
class AttackReport:
    """success: (B,) bool, x_adv misclassified; adversarial_labels: (B,) int64, the model's labels for
    x_adv; success_rate in [0, 1]; median/mean L∞ and L2 norms of x_adv − x over the successful images
    (nan when none succeeded)."""

    success: torch.Tensor
    adversarial_labels: torch.Tensor
    success_rate: float
    median_linf: float
    mean_linf: float
    median_l2: float
    mean_l2: float


def _median_mean(norms: torch.Tensor) -> tuple[float, float]:
    if len(norms) == 0:
        return math.nan, math.nan
    return norms.quantile(0.5).item(), norms.mean().item()


def attack_report(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> AttackReport:
    """Evaluate x_adv against the labels y.

    x, x_adv: (B, C, H, W) in [0, 1]; y: (B,) labels. Pass images the model classifies correctly for the
    usual success rate (a clean mistake counts as a success with norm 0). The model's mode is restored.
    """
    check_images(x_adv, "x_adv")
    with attacking(model, x, y) as (x, y), torch.no_grad():
        if x_adv.shape != x.shape:
            raise UserInputError(f"x_adv must have x's shape {tuple(x.shape)}, got {tuple(x_adv.shape)}")
        x_adv = x_adv.detach().to(x.device).clamp(0, 1)
        labels = model(x_adv).argmax(1)
    success = labels != y
    delta = (x_adv - x)[success].float()
    median_linf, mean_linf = _median_mean(lp_norms(delta, math.inf))
    median_l2, mean_l2 = _median_mean(lp_norms(delta, 2))
    return AttackReport(success, labels, success.float().mean().item(), median_linf, mean_linf, median_l2, mean_l2)
