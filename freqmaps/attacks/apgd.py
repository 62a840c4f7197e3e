"""Auto-PGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"), L∞ and L2, on the cross-entropy or the difference-of-logits ratio (DLR), untargeted or
targeted: the gradient attacks of AutoAttack (APGD-CE, APGD-T on DLR).

Each step is a projected sign (L∞) or normalised (L2) step of size η from x^k, then momentum:
    z = Π(x^k + η·s(∇ℓ(x^k))),   x^{k+1} = Π(x^k + α(z − x^k) + (1 − α)(x^k − x^{k−1})),   α = 0.75 (1 at k = 0),
η starts at 2ε. At the checkpoints w_j = ⌈p_j N⌉ (p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03,
0.06); as the authors' code: a checkpoint interval of 0.22 N, shrinking by 0.03 N down to 0.06 N) η is halved
for an image, and its iterate moved back to its best point so far, when (1) its loss rose in at most ρ = 0.75 of
the interval's steps, or (2) η was not halved at the previous checkpoint and its best loss has not improved since.

DLR(x, y) = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3), z the logits sorted descending as z_π1 ≥ z_π2 ≥ …; targeted
towards t: −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2). DLR does not change when the logits are scaled, so it is
immune to the logit-scale masking that defeats the cross-entropy. Targeted runs go through the `target_classes`
classes ranked 2nd, 3rd, … by the clean logits, each on the images not fooled yet (AutoAttack: 9).

`float64=True` runs the attack on a float64 copy of the model (gradients that underflow in float32, e.g. through
saturated sigmoids, survive); x_adv comes back in x's dtype, projected onto the ball again after the cast.
Differences from the authors' code: the random start is uniform in the ball (theirs: a scaled uniform / Gaussian
point); the first checkpoint counts its increases from the starting loss.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks.base import Attack, check_norm, check_positive
from freqmaps.attacks.pgd import ascent_step, check_loss, project, random_ball
from freqmaps.errors import UserInputError


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The difference-of-logits ratio (B, K), (B,) -> (B,), larger for a more adversarial point; untargeted
    (target None, K >= 3) or towards target (B,) (K >= 4). See the module docstring."""
    ordered = logits.sort(1, descending=True).values
    true = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = torch.where(ordered[:, 0] == true, ordered[:, 1], ordered[:, 0])  # the largest other logit
        return -(true - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    wanted = logits.gather(1, target[:, None]).squeeze(1)
    return -(true - wanted) / (ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12)


def apgd_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, loss: str) -> torch.Tensor:
    """The per-image loss APGD ascends, in float32 or float64 (logits' precision if higher): "ce" the
    cross-entropy of y (untargeted) or minus that of target; "dlr" `dlr_loss`."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if loss == "dlr":
        return dlr_loss(logits, y, target)
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


class APGD(Attack):
    """Auto-PGD.

    Args:
        eps: radius of the ball (pixel units of [0, 1]).
        norm: "linf" or "l2".
        steps: iterations N of one run (AutoAttack: 100).
        loss: "ce" or "dlr".
        targeted: run targeted towards each of the `target_classes` next-ranked classes in turn (APGD-T).
        target_classes: how many target classes (at most K − 1; AutoAttack: 9).
        restarts: random restarts per run, each on the images not fooled yet.
        rho: the share of loss increases under which a checkpoint halves η (0.75).
        momentum: α (0.75).
        float64: run on a float64 copy of the model.
        channels_last: hand the model channels-last input (see `Attack`).

    Returns per image the last fooling iterate found, else the highest-loss point of its last run (in the ball
    and [0, 1]); images misclassified clean come back unchanged.
    """

    def __init__(
        self, eps: float = 8 / 255, norm: str = "linf", steps: int = 100, loss: str = "ce", targeted: bool = False,
        target_classes: int = 9, restarts: int = 1, rho: float = 0.75, momentum: float = 0.75, float64: bool = False,
        channels_last: bool = True,
    ) -> None:
        check_norm(norm)
        check_loss(loss, ("ce", "dlr"))
        check_positive(eps=eps, steps=steps, target_classes=target_classes, restarts=restarts, rho=rho,
                       momentum=momentum)
        if momentum > 1:
            raise UserInputError(f"APGD momentum must be in (0, 1], got {momentum}")
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self.loss = loss
        self.targeted = targeted
        self.target_classes = target_classes
        self.restarts = restarts
        self.rho = rho
        self.momentum = momentum
        self.float64 = float64
        self.channels_last = channels_last

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_work = x
        if self.float64:
            model, x_work = copy.deepcopy(model).double(), x.double()
        with torch.no_grad():
            clean = model(x_work)
        classes = clean.shape[1]
        if self.loss == "dlr" and classes < (4 if self.targeted else 3):
            raise UserInputError(f"{'targeted ' if self.targeted else ''}DLR needs at least "
                                 f"{4 if self.targeted else 3} classes, the model gives {classes}")
        best = x_work.clone()
        fooled = clean.argmax(1) != y
        ranks = range(2, 2 + min(self.target_classes, classes - 1)) if self.targeted else [None]
        for rank in ranks:
            for _ in range(self.restarts):
                todo = (~fooled).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                target = None if rank is None else clean[todo].argsort(1, descending=True)[:, rank - 1]
                best[todo], fooled[todo] = self.run(model, x_work[todo], y[todo], target)
        if self.float64:
            return project(best.to(x.dtype), x, self.eps, self.norm)
        return best

    def loss_and_grad(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                      target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-image loss (B,), its input gradient (B, C, H, W) and whether x fools the model (B,) bool."""
        x = x.detach().requires_grad_()
        logits = model(x)
        loss = apgd_loss(logits, y, target, self.loss)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad, logits.detach().argmax(1) != y

    def run(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor,
            target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run from a random start: (x_adv (B, C, H, W), fooled (B,) bool)."""
        interval = max(int(0.22 * self.steps), 1)
        shrink, shortest = max(int(0.03 * self.steps), 1), max(int(0.06 * self.steps), 1)
        x = random_ball(x0, self.eps, self.norm)
        loss, grad, fooled = self.loss_and_grad(model, x, y, target)
        x_out = x.clone()
        x_best, loss_best, grad_best = x.clone(), loss.clone(), grad.clone()
        eta = torch.full((len(x0), 1, 1, 1), 2 * self.eps, dtype=x0.dtype, device=x0.device)
        x_prev, loss_prev = x, loss
        increases, since = torch.zeros_like(loss), 0
        best_at_check, halved_at_check = loss_best.clone(), torch.ones_like(fooled)
        for step in range(self.steps):
            alpha = 1.0 if step == 0 else self.momentum
            z = ascent_step(x, grad, x0, self.eps, eta, self.norm)
            x, x_prev = project(x + alpha * (z - x) + (1 - alpha) * (x - x_prev), x0, self.eps, self.norm), x
            loss, grad, now_fooled = self.loss_and_grad(model, x, y, target)
            x_out[now_fooled] = x[now_fooled]
            fooled |= now_fooled
            increases += loss > loss_prev
            loss_prev = loss
            improved = loss > loss_best
            x_best[improved], grad_best[improved], loss_best[improved] = x[improved], grad[improved], loss[improved]
            since += 1
            if since < interval:
                continue
            halve = (increases <= self.rho * interval) | (~halved_at_check & (best_at_check >= loss_best))
            eta[halve] /= 2
            x[halve], grad[halve] = x_best[halve], grad_best[halve]
            halved_at_check, best_at_check = halve, loss_best.clone()
            interval, since = max(interval - shrink, shortest), 0
            increases.zero_()
        return torch.where(fooled.view(-1, 1, 1, 1), x_out, x_best), fooled

