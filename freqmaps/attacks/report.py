"""How an attack went: per image, whether it succeeded, the adversarial label and the perturbation's norms; and
the summaries over the successful images (success rate, median / mean L∞ and L2)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn

from freqmaps.attacks.base import attacking, lp_norms
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images


@dataclass
class AttackReport:
    """Per image of B: success (B,) bool, x_adv misclassified; adversarial_labels (B,) int64, the model's labels
    for x_adv; linf, l2 (B,) float32, the L∞ and L2 norms of x_adv − x.

    The summaries are computed from those rows, so a report of a subset (`select`) or of several batches
    (`cat`) summarises exactly the images it holds: success_rate in [0, 1]; median/mean L∞ and L2 norms over
    the successful images (nan when none succeeded, success_rate nan for no images).
    """

    success: torch.Tensor
    adversarial_labels: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor

    def __len__(self) -> int:
        return len(self.success)

    def select(self, rows: torch.Tensor) -> AttackReport:
        """The report of `rows` (a bool mask or integer positions) only."""
        return AttackReport(*(getattr(self, f.name)[rows] for f in fields(self)))

    def cpu(self) -> AttackReport:
        return AttackReport(*(getattr(self, f.name).cpu() for f in fields(self)))

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors by field name, on the CPU (for torch.save; `AttackReport(**state)` reads it back)."""
        return {f.name: getattr(self, f.name).detach().cpu() for f in fields(self)}

    @classmethod
    def cat(cls, reports: Sequence[AttackReport]) -> AttackReport:
        """One report of the images of all `reports`, in their order."""
        return cls(*(torch.cat([getattr(r, f.name) for r in reports]) for f in fields(cls)))

    @property
    def success_rate(self) -> float:
        return self.success.float().mean().item()

    @property
    def median_linf(self) -> float:
        return _median(self.linf[self.success])

    @property
    def mean_linf(self) -> float:
        return _mean(self.linf[self.success])

    @property
    def median_l2(self) -> float:
        return _median(self.l2[self.success])

    @property
    def mean_l2(self) -> float:
        return _mean(self.l2[self.success])


def _median(norms: torch.Tensor) -> float:
    return norms.quantile(0.5).item() if len(norms) else math.nan


def _mean(norms: torch.Tensor) -> float:
    return norms.mean().item() if len(norms) else math.nan


def attack_report(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> AttackReport:
    """Evaluate x_adv against the labels y.

    x, x_adv: (B, C, H, W) in [0, 1]; y: (B,) labels. The report's tensors are on x's device. Select the images
    the model classifies correctly for the usual success rate (a clean mistake counts as a success with norm 0).
    The model's mode is restored.
    """
    check_images(x_adv, "x_adv")
    with attacking(model, x, y) as (x, y), torch.no_grad():
        if x_adv.shape != x.shape:
            raise UserInputError(f"x_adv must have x's shape {tuple(x.shape)}, got {tuple(x_adv.shape)}")
        x_adv = x_adv.detach().to(x.device).clamp(0, 1)
        labels = model(x_adv).argmax(1)
    delta = (x_adv - x).float()
    return AttackReport(labels != y, labels, lp_norms(delta, math.inf), lp_norms(delta, 2))
