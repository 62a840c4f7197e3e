"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016, "DeepFool: a simple and accurate method to
fool deep neural networks"), L∞ and L2, batched, with foolbox 3's defaults (docs/method.md §2).

The candidates are the top-k classes by the clean logits, c₀ the predicted one. At each step, for
every candidate k ≠ c₀, with the logit difference f_k = z_k − z_c₀ and its input gradient w_k, the
linearised distance to that boundary is |f_k| / ‖w_k‖_dual; the closest candidate k* gives the step
  L∞: r = (d + 1e-4)·sign(w_k*),   L2: r = (d + 1e-4)·w_k* / ‖w_k*‖₂,
accumulated into r_total, and x_adv = clip(x + (1 + overshoot)·r_total, 0, 1).

Batched over images and candidates: one forward per step and one backward per candidate on the
same graph (foolbox runs a forward and a backward per candidate). An image stops once it is
misclassified and leaves the batch, so finished images cost nothing further. The iterates equal
foolbox's `LinfDeepFoolAttack` / `L2DeepFoolAttack` (tests/freqmaps/attacks). With an overshoot of 0.02
x_adv sits just past the boundary: re-evaluated under other rounding (bf16 autocast, TF32) a few images
can flip back; a larger overshoot keeps a margin.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from freqmaps.attacks.base import (
    DUAL_NORMS,
    MinimumNormAttack,
    MinimumNormResult,
    check_norm,
    check_positive,
    lp_norms,
    per_image,
)
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_label_range


class DeepFool(MinimumNormAttack):
    """Untargeted DeepFool on the logits.

    Args:
        norm: "linf" or "l2".
        steps: maximum steps per image.
        candidates: how many of the most likely classes (including the predicted one) to consider.
        overshoot: relative overshoot of the accumulated perturbation past the boundary.
        channels_last: hand the model channels-last input (see `Attack`).

    `run(model, x, y)` returns x_adv with a success mask and norms (inf where the image was not
    fooled within `steps`; x_adv is then the last iterate).
    """

    def __init__(self, norm: str = "linf", steps: int = 50, candidates: int = 10, overshoot: float = 0.02,
                 channels_last: bool = True) -> None:
        check_norm(norm)
        check_positive(steps=steps)
        if candidates < 2:
            raise UserInputError(f"candidates must be >= 2 (the predicted class and a rival), got {candidates}")
        if overshoot < 0:
            raise UserInputError(f"overshoot must be >= 0, got {overshoot}")
        self.norm = norm
        self.steps = steps
        self.candidates = candidates
        self.overshoot = overshoot
        self.channels_last = channels_last

    def minimise(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MinimumNormResult:
        p, dual = check_norm(self.norm), DUAL_NORMS[self.norm]
        x_adv, r_total = x.clone(), torch.zeros_like(x)
        success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.arange(len(x), device=x.device)
        classes = None
        for _ in range(self.steps):
            x_step = x_adv[active].requires_grad_()
            logits = model(x_step).float()
            if classes is None:  # labels are only compared with predictions here: check them once
                check_label_range(y, logits.shape[1], "the batch")
                classes = logits.detach().argsort(1, descending=True)[:, : min(self.candidates, logits.shape[1])]
            fooled = logits.detach().argmax(1) != y[active]
            success[active[fooled]] = True
            active, keep = active[~fooled], ~fooled
            if len(active) == 0:
                break
            z = logits[keep].gather(1, classes[active])
            diffs = z[:, 1:] - z[:, :1]
            best_dist = torch.full((len(active),), math.inf, device=x.device)
            best_grad = torch.zeros_like(x_step[keep])
            for k in range(diffs.shape[1]):
                (grad,) = torch.autograd.grad(diffs[:, k].sum(), x_step, retain_graph=k < diffs.shape[1] - 1)
                grad = grad[keep]
                dist = diffs[:, k].detach().abs() / (lp_norms(grad, dual) + 1e-8)
                closer = dist < best_dist
                best_dist = torch.where(closer, dist, best_dist)
                best_grad = torch.where(per_image(closer, grad), grad, best_grad)
            dist = best_dist + 1e-4
            if self.norm == "linf":
                step = per_image(dist, best_grad) * best_grad.sign()
            else:
                step = per_image(dist / (lp_norms(best_grad, 2) + 1e-8), best_grad) * best_grad
            r_total[active] += step
            x_adv[active] = (x[active] + (1 + self.overshoot) * r_total[active]).clamp(0, 1)
        if len(active):  # out of steps: check the last update
            with torch.no_grad():
                success[active] = model(x_adv[active]).argmax(1) != y[active]
        norms = torch.where(success, lp_norms(x_adv - x, p), math.inf)
        return MinimumNormResult(x_adv, success, norms)
