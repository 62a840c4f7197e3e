"""Intrinsic-dimension estimators behind one interface, for IdCor (docs/method.md §3).

Each estimator reads every point's k nearest-neighbour distances, r: (n, k) ascending (squared distances with
`squared=True`, as IdCor's distance matrices hold them), and returns an `Estimate`: the dimension, its standard
error from the estimator's likelihood, and the points it used. Points at distance 0 from a neighbour
(duplicates) are dropped by every estimator, as TwoNN's rule does.

* `TwoNN(fraction)` (Facco et al. 2017, Sci. Rep. 7:12140), k = 2: the least-squares fit of the paper's code
  (docs/method.md §3). Its standard error is that of the likelihood's estimator: mu = r2 / r1 is Pareto with
  exponent d, so the maximum-likelihood d from N ratios has Fisher information N / d^2 and standard error
  d / sqrt(N).
* `LevinaBickel(k)` (Levina & Bickel 2004, NeurIPS; MacKay & Ghahramani's pooling): each point's
  sum_{j<k} log(T_k / T_j) is Gamma(k - 1, rate d) under a locally uniform density, so the pooled maximum
  likelihood is d = n (k - 1) / sum over points, i.e. the inverse of the mean of the per-point inverses, with
  standard error d / sqrt(n (k - 1)) (neighbourhoods overlap, so this is a lower bound on the true spread).
* `Gride(n1)` (Denti et al. 2022, Sci. Rep. 12:20005; dadapy's `compute_id_gride`): the ratio
  mu = T_{n2} / T_{n1}, n2 = 2 n1, has density d (mu^d - 1)^{n2-n1-1} / (B(n2 - n1, n1) mu^{(n2-1) d + 1});
  d is the root of the log-likelihood's (decreasing) derivative, with dadapy's N - 1 for N in its first term,
  found by bisection; the standard error is 1 / sqrt(-l''(d)). n1 = 1 is TwoNN's likelihood form,
  (N - 1) / sum(log mu); larger n1 looks at larger scales (estimate at n1 = 1, 2, 4, ... to see how the
  dimension depends on the scale). Unlike dadapy, no ratio is dropped as an outlier.

Every closed-form standard error counts the points as independent; neighbouring points share neighbours, so
the spread of an estimate over independent draws of the data is larger: 1.2 to 1.4 times (1000 points of a
5-cube, 200 draws; tests/freqmaps/test_intrinsic_dimension.py). `freqmaps.bootstrap`'s resampled standard
deviation of TwoNN on such clouds is 1.15 to 1.3 times that spread (three clouds, 200 resamples each): its
IdCor intervals are somewhat conservative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from freqmaps.errors import UserInputError


@dataclass(frozen=True)
class Estimate:
    """An intrinsic dimension, its standard error, and the number of points the fit used."""

    dimension: float
    standard_error: float
    points: int


def _too_few(name: str, usable: int, needed: int) -> UserInputError:
    return UserInputError(f"{name} has {usable} usable points (after dropping duplicates and ties), needs at least "
                          f"{needed}: too few to fit a dimension; give it more distinct points")


@dataclass(frozen=True)
class TwoNN:
    """TwoNN over the first `fraction` of the sorted ratios (the paper's code: 0.9)."""

    fraction: float = 0.9
    name = "twonn"

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise UserInputError(f"fraction must be in (0, 1], got {self.fraction}")

    @property
    def neighbours(self) -> int:
        return 2

    def estimate(self, r: torch.Tensor, squared: bool) -> Estimate:
        """r: (n, >= 2) nearest-neighbour distances, ascending. docs/method.md §3: mu = r2 / r1, points with
        r1 == 0 or r1 == r2 dropped, mu sorted, F_i = i / N (i = 1..N); least-squares line through the origin
        of -log(1 - F_i) against log mu_i over the first floor(fraction * N) points, never the last (F_N = 1)."""
        r1, r2 = r[:, 0].double(), r[:, 1].double()
        good = (r1 > 0) & (r1 != r2)
        log_mu = torch.log(r2[good] / r1[good]).sort().values
        if squared:
            log_mu = log_mu / 2
        N = log_mu.numel()
        npoints = min(math.floor(N * self.fraction), N - 1)
        x = log_mu[:npoints]
        if npoints < 1 or not bool((x != 0).any()):
            raise _too_few("TwoNN", N, 2)
        F_emp = torch.arange(1, npoints + 1, dtype=torch.float64, device=x.device) / N
        d = float((x @ -torch.log1p(-F_emp)) / (x @ x))
        return Estimate(d, d / math.sqrt(N), N)


@dataclass(frozen=True)
class LevinaBickel:
    """The maximum-likelihood estimator of Levina and Bickel from k neighbours (pooled over points)."""

    k: int = 10
    name = "mle"

    def __post_init__(self) -> None:
        if self.k < 2:
            raise UserInputError(f"LevinaBickel needs k >= 2 neighbours, got {self.k}")

    @property
    def neighbours(self) -> int:
        return self.k

    def estimate(self, r: torch.Tensor, squared: bool) -> Estimate:
        r = r[:, : self.k].double()
        r = r[r[:, 0] > 0]
        if len(r) < 2:
            raise _too_few("LevinaBickel", len(r), 2)
        logs = torch.log(r[:, -1:] / r[:, :-1]).sum(1)  # per point: sum_{j<k} log(T_k / T_j)
        if squared:
            logs = logs / 2
        total = float(logs.sum())
        if total <= 0:
            raise _too_few("LevinaBickel", 0, 2)
        samples = len(r) * (self.k - 1)
        d = samples / total
        return Estimate(d, d / math.sqrt(samples), len(r))


def _gride_derivatives(d: float, log_mu: torch.Tensor, n1: int, n2: int) -> tuple[float, float]:
    """First and second derivative in d of the GRIDE log-likelihood of the ratios' logs log_mu (N,) > 0, with
    dadapy's N - 1 in place of N in the first (which makes n1 = 1 the unbiased (N - 1) / sum(log mu))."""
    t = d * log_mu
    tail = n2 - n1 - 1
    first = (len(log_mu) - 1) / d - (n2 - 1) * float(log_mu.sum())  # N - 1: dadapy's (unbiased at n1 = 1)
    second = -len(log_mu) / d**2
    if tail:
        first += tail * float((log_mu / -torch.expm1(-t)).sum())  # log mu * mu^d / (mu^d - 1)
        second -= tail * float((log_mu.square() / (4 * torch.sinh(t / 2).square())).sum())
    return first, second


@dataclass(frozen=True)
class Gride:
    """GRIDE at scale n1 (ratio of the 2 n1-th to the n1-th neighbour distance)."""

    n1: int = 1
    name = "gride"

    def __post_init__(self) -> None:
        if self.n1 < 1:
            raise UserInputError(f"Gride needs n1 >= 1, got {self.n1}")

    @property
    def neighbours(self) -> int:
        return 2 * self.n1

    def estimate(self, r: torch.Tensor, squared: bool) -> Estimate:
        n1, n2 = self.n1, 2 * self.n1
        low, high = r[:, n1 - 1].double(), r[:, n2 - 1].double()
        good = (low > 0) & (high > low)
        log_mu = torch.log(high[good] / low[good])
        if squared:
            log_mu = log_mu / 2
        if len(log_mu) < 2:
            raise _too_few("Gride", len(log_mu), 2)
        lo, hi = 1e-6, 1e6  # the derivative falls from +inf (d -> 0) to below 0 (d -> inf): bisect in log d
        for _ in range(100):
            mid = math.sqrt(lo * hi)
            if _gride_derivatives(mid, log_mu, n1, n2)[0] > 0:
                lo = mid
            else:
                hi = mid
        d = math.sqrt(lo * hi)
        return Estimate(d, 1 / math.sqrt(-_gride_derivatives(d, log_mu, n1, n2)[1]), len(log_mu))


Estimator = TwoNN | LevinaBickel | Gride
