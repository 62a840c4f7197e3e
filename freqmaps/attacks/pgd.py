"""Projected gradient descent (Madry et al. 2018, "Towards deep learning models resistant to
adversarial attacks"), L∞ and L2, with random start and restarts.

Each step ascends the cross-entropy, x ← Π_{B_ε(x0) ∩ [0,1]}(x + α·s(∇ℓ)), with s = sign for L∞ and
s = ∇ℓ/‖∇ℓ‖₂ for L2. Defaults follow foolbox 3 (the paper's code, docs/method.md §2): L∞ ε = 8/255, 40 steps,
α = 0.01/0.3·ε; for L2 foolbox's α = 0.025·ε (foolbox's L2 PGD runs 50 steps by default, here 40 for both).
Step for step the iterates equal foolbox's (tests/freqmaps/attacks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.attacks.base import Attack, check_norm, check_positive, lp_norms, per_image
from freqmaps.errors import UserInputError

_REL_STEP = {"linf": 0.01 / 0.3, "l2": 0.025}


def random_ball(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A point drawn uniformly from the ε-ball around each image, clipped to [0, 1]."""
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        direction = torch.randn_like(x)
        direction = direction / per_image(lp_norms(direction, 2).clamp_min(1e-12), x)
        radius = torch.rand(len(x), device=x.device, dtype=x.dtype) ** (1 / x[0].numel())
        delta = direction * per_image(eps * radius, x)
    return (x + delta).clamp(0, 1)


def ascent_step(
    x_adv: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor, eps: float, step_size: float, norm: str
) -> torch.Tensor:
    """One projected step up the gradient: the new x_adv inside the ε-ball around x0 and inside [0, 1]."""
    if norm == "linf":
        x_adv = x_adv + step_size * grad.sign()
        delta = (x_adv - x0).clamp(-eps, eps)
    else:
        x_adv = x_adv + step_size * grad / per_image(lp_norms(grad, 2).clamp_min(1e-12), grad)
        delta = x_adv - x0
        delta = delta * per_image((eps / lp_norms(delta, 2).clamp_min(1e-12)).clamp_max(1), delta)
    return (x0 + delta).clamp(0, 1)


class PGD(Attack):
    """Untargeted PGD on the cross-entropy.

    Args:
        eps: radius of the ball (in pixel units of [0, 1]).
        norm: "linf" or "l2".
        steps: gradient steps per restart.
        step_size: α; None for foolbox's default (L∞ 0.01/0.3·ε, L2 0.025·ε).
        random_start: start each restart at a uniform point of the ball (required for restarts > 1).
        restarts: independent runs; per image the first run that fools the model is kept, else the run
            with the highest final loss. Restarts after the first attack only the images not fooled yet.
        early_stop: stop ascending on an image at the first iterate that fools the model and return that
            iterate (the robust-accuracy evaluation: any point of the ball that fools counts, and fooled images
            cost no further steps); False: every image takes all steps and the last iterate is returned.
        channels_last: hand the model channels-last input (see `Attack`).
    """

    def __init__(
        self, eps: float = 8 / 255, norm: str = "linf", steps: int = 40, step_size: float | None = None,
        random_start: bool = True, restarts: int = 1, early_stop: bool = False, channels_last: bool = True,
    ) -> None:
        check_norm(norm)
        check_positive(eps=eps, steps=steps, restarts=restarts)
        if step_size is not None:
            check_positive(step_size=step_size)
        if restarts > 1 and not random_start:
            raise UserInputError("restarts > 1 need random_start=True (otherwise every restart is the same)")
        self.eps = eps
        self.norm = norm
        self.steps = steps
        self.step_size = step_size if step_size is not None else _REL_STEP[norm] * eps
        self.random_start = random_start
        self.restarts = restarts
        self.early_stop = early_stop
        self.channels_last = channels_last

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.restarts == 1:
            return self.ascend(model, x, y)
        best = x.clone()
        best_loss = torch.full((len(x),), -torch.inf, device=x.device)
        todo = torch.arange(len(x), device=x.device)
        for _ in range(self.restarts):
            x_adv = self.ascend(model, x[todo], y[todo])
            with torch.no_grad():
                logits = model(x_adv).float()
            loss = F.cross_entropy(logits, y[todo], reduction="none")
            fooled = logits.argmax(1) != y[todo]
            better = fooled | (loss > best_loss[todo])
            best[todo[better]] = x_adv[better]
            best_loss[todo[better]] = loss[better]
            todo = todo[~fooled]
            if len(todo) == 0:
                break
        return best

    def ascend(self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One PGD run from x0 (B, C, H, W) in [0, 1]; returns the last iterate (with `early_stop`, the first
        fooling iterate of each image that has one)."""
        x_adv = random_ball(x0, self.eps, self.norm) if self.random_start else x0
        if not self.early_stop:
            for _ in range(self.steps):
                x_adv = x_adv.detach().requires_grad_()
                loss = F.cross_entropy(model(x_adv).float(), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_adv)
                x_adv = ascent_step(x_adv.detach(), grad, x0, self.eps, self.step_size, self.norm)
            return x_adv
        out = x_adv.detach().clone()
        active = torch.arange(len(x0), device=x0.device)
        for _ in range(self.steps):
            current = out[active].requires_grad_()
            logits = model(current).float()
            fooled = logits.argmax(1) != y[active]
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y[active], reduction="sum"), current)
            going = active[~fooled]
            out[going] = ascent_step(current.detach()[~fooled], grad[~fooled], x0[going], self.eps,
                                     self.step_size, self.norm)
            active = going
            if len(active) == 0:
                break
        return out
