"""Square attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020, "Square attack: a query-efficient black-box
adversarial attack via random search"), L∞ and L2, untargeted: AutoAttack's gradient-free member.

It never asks for a gradient: a random search on the logit margin m(x) = z_y − max_{i≠y} z_i, keeping a proposal
only when it lowers m, stopping on an image once m ≤ 0. L∞: start from vertical stripes of ±ε; each proposal
sets a random s×s square (the same place for the batch, an own sign per image and channel) to x ± ε. L2: start
from a grid of ±"meta-squares" (two rectangles of opposite sign whose mass decays from their centre) scaled to
norm ε; each proposal moves the perturbation's mass of a second random square into a new meta-square at the
first, keeping the norm ε. The square's side follows the share p of the image's pixels, p_init halved at 10, 50,
200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries (the schedule rescaled to `queries`), as in the
authors' code (and AutoAttack's and torchattacks' ports, whose square positions and defaults these are).

Because it reads only the model's outputs, it is unaffected by gradients that vanish, explode or are
obfuscated: a model that resists PGD but falls to Square is masking its gradients.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from freqmaps.attacks.base import Attack, check_norm, check_positive, lp_norms, margin, per_image
from freqmaps.errors import UserInputError

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10,000 queries


def square_share(p_init: float, query: int, queries: int) -> float:
    """The share p of the image a square covers at `query` of `queries`: p_init, halved at each of _HALVINGS
    passed (the schedule of 10,000 queries rescaled to `queries`)."""
    at = int(query / queries * 10000)
    return p_init / 2 ** sum(at > h for h in _HALVINGS)


def _rectangle(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(rows, cols) of nested rectangles around the centre, weight 1/(k+1)^2 from ring k, unit L2 norm."""
    delta = torch.zeros(rows, cols, dtype=dtype, device=device)
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        delta[max(top, 0):min(top + 2 * k + 1, rows), max(left, 0):min(left + 2 * k + 1, cols)] += 1 / (k + 1) ** 2
        top, left = top - 1, left - 1
    return delta / delta.norm().clamp_min(1e-12)


def meta_square(s: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(s, s) of unit L2 norm: a positive rectangle above a negative one (transposed with probability 1/2)."""
    delta = torch.cat([_rectangle(s // 2, s, dtype, device), -_rectangle(s - s // 2, s, dtype, device)])
    delta = delta / delta.norm().clamp_min(1e-12)
    return delta.T if torch.rand(()) > 0.5 else delta


def random_signs(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """±1 with equal probability, in like's dtype and device."""
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype) * 2 - 1


class Square(Attack):
    """Untargeted Square attack on the logit margin.

    Args:
        eps: radius of the ball (pixel units of [0, 1]).
        norm: "linf" or "l2".
        queries: the query budget: proposals per image after the initial one (AutoAttack: 5000).
        p_init: initial share of the image a square covers (AutoAttack: 0.8).
        channels_last: hand the model channels-last input (see `Attack`).

    Returns per image the point of lowest margin found (an adversarial once one is found; in the ball and
    [0, 1]); images misclassified at the start need no query beyond it. Images need H, W >= 5 for L2.
    """

    def __init__(self, eps: float = 8 / 255, norm: str = "linf", queries: int = 5000, p_init: float = 0.8,
                 channels_last: bool = True) -> None:
        check_norm(norm)
        check_positive(eps=eps, queries=queries, p_init=p_init)
        if p_init > 1:
            raise UserInputError(f"Square p_init is a share of the image, in (0, 1]; got {p_init}")
        self.eps = eps
        self.norm = norm
        self.queries = queries
        self.p_init = p_init
        self.channels_last = channels_last

    @property
    def steps(self) -> int:
        """The query budget, under the name `Attack.capped` shortens."""
        return self.queries

    @steps.setter
    def steps(self, value: int) -> None:
        self.queries = value

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        if self.norm == "l2" and min(height, width) < 5:
            raise UserInputError(f"the L2 Square attack needs images of at least 5x5 pixels, got {height}x{width}")
        with torch.no_grad():
            x_best = self.start(x)
            margin_best = margin(model(x_best), y)
            for query in range(self.queries):
                todo = (margin_best > 0).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                p = square_share(self.p_init, query, self.queries)
                side = min(max(round(math.sqrt(p * height * width)), 1), height - 1)
                propose = self.propose_linf if self.norm == "linf" else self.propose_l2
                x_new = propose(x[todo], x_best[todo], side)
                margin_new = margin(model(x_new), y[todo])
                better = margin_new < margin_best[todo]
                x_best[todo[better]], margin_best[todo[better]] = x_new[better], margin_new[better]
        return x_best

    def start(self, x: torch.Tensor) -> torch.Tensor:
        """The initial point: L∞ vertical stripes of ±ε; L2 a grid of ±meta-squares of norm ε."""
        batch, channels, height, width = x.shape
        if self.norm == "linf":
            return (x + self.eps * random_signs((batch, channels, 1, width), x)).clamp(0, 1)
        delta = torch.zeros_like(x)
        s = height // 5
        top = (height - 5 * s) // 2
        for i in range(height // s):
            for j in range(width // s):
                rows, cols = slice(top + i * s, top + (i + 1) * s), slice(top + j * s, top + (j + 1) * s)
                delta[:, :, rows, cols] += meta_square(s, x.dtype, x.device) * random_signs((batch, channels, 1, 1), x)
        return (x + delta * per_image(self.eps / lp_norms(delta, 2).clamp_min(1e-12), x)).clamp(0, 1)

    def propose_linf(self, x: torch.Tensor, x_best: torch.Tensor, side: int) -> torch.Tensor:
        """x_best with a random side×side square (one place, own signs per image and channel) moved to x ± ε."""
        batch, channels, height, width = x.shape
        top, left = (int(torch.randint(0, n - side + 1, ())) for n in (height, width))
        x_new = x_best.clone()
        window = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
        x_new[window] = x[window] + self.eps * random_signs((batch, channels, 1, 1), x)
        return x_new.clamp(0, 1)

    def propose_l2(self, x: torch.Tensor, x_best: torch.Tensor, side: int) -> torch.Tensor:
        """x_best with the mass of two random side×side windows (side odd, >= 3) put into a new meta-square at the
        first, the rest of the perturbation unchanged, its norm ε (before clipping to [0, 1])."""
        side = max(side, 3) + (max(side, 3) % 2 == 0)
        _, channels, height, width = x.shape
        side = min(side, height, width)
        delta = x_best - x
        (top, left), (top2, left2) = ((int(torch.randint(0, n - side + 1, ())) for n in (height, width))
                                      for _ in range(2))
        first = (slice(None), slice(None), slice(top, top + side), slice(left, left + side))
        second = (slice(None), slice(None), slice(top2, top2 + side), slice(left2, left2 + side))
        windows = torch.zeros_like(x[:1, :1])
        windows[first] = windows[second] = 1
        norm_image = per_image(lp_norms(delta, 2), x)
        norm_windows = per_image(lp_norms(delta * windows, 2), x)
        old = delta[first]
        old = old / old.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12)
        new = meta_square(side, x.dtype, x.device) * random_signs((len(x), channels, 1, 1), x) + old
        budget = ((self.eps ** 2 - norm_image ** 2).clamp_min(0) / channels + norm_windows ** 2).sqrt()
        new = new / new.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12) * budget
        delta = delta.clone()
        delta[second] = 0
        delta[first] = new
        return (x + delta * per_image(self.eps / lp_norms(delta, 2).clamp_min(1e-12), x)).clamp(0, 1)
