"""Bootstrap confidence intervals over pairs for IdCor, SVCCA, CKA and the paired cosine (docs/method.md §3).

The permutation test answers "is there any dependence?"; a confidence interval answers "how large is it, and
how sure are we?". A resample draws n pairs (rows i of A and E together) with replacement; every measure is
recomputed on it, and the interval is read off the `resamples` values by the percentile method or by BCa
(bias-corrected and accelerated, Efron 1987; acceleration from the jackknife).

IdCor reuses the two (n, n) squared-distance matrices of the standardised sets (and their sum, the joint set's):
a resample's distances are a row/column gather of them. Resampling repeats points, and a copy is at distance 0
from its twin, which TwoNN's rule (drop r1 == 0) would throw away together with the twin; and a point whose
nearest neighbour was drawn twice would see r1 == r2, a tie TwoNN also drops. Here each distinct point of the
resample finds its nearest neighbours among the other distinct points of the resample, and enters the fit as
many times as the resample draws it (its mu repeated): the bootstrap's weighting, with every neighbourhood
one of distinct points, as TwoNN assumes. Exact duplicates in the original data (r1 == 0 between different
points) are still dropped as before. The standardisation is that of the full sample (the resample's own column
means would shift every distance by sampling noise of the preprocessing, not of the pairs).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from freqmaps.correlation import (
    _check_pair, _chunk_rows, _nearest, cka, idcor_score, pair_cosines, squared_distances, standardize_rows, svcca,
)
from freqmaps.errors import UserInputError
from freqmaps.intrinsic_dimension import Estimator, TwoNN

Method = Literal["percentile", "bca"]


@dataclass
class Interval:
    """A bootstrap confidence interval: the estimate on the full sample, [low, high] at `level`, the method,
    and the resampled values (resamples,) float64."""

    estimate: float
    low: float
    high: float
    level: float
    method: str
    values: torch.Tensor

    def scalars(self, name: str) -> dict[str, float]:
        """{name_ci_low, name_ci_high} for tables and loggers."""
        return {f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}


def resample_indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    """(resamples, n) int64 row indices drawn with replacement from a CPU generator seeded with `seed`."""
    if resamples < 2:
        raise UserInputError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    return torch.randint(0, n, (resamples, n), generator=torch.Generator().manual_seed(seed))


def dimension_of_resample(D: torch.Tensor, b: torch.Tensor, estimator: Estimator) -> float:
    """The dimension of the resample b (m,) of points with squared distances D (n, n).

    Each distinct point u of b finds its neighbours among the other distinct points of b, and enters the fit as
    many times as b draws it (see the module docstring). Rows come in blocks, each an index_select of D's rows
    u[start:stop] and a gather of their columns u into two buffers allocated once (the pattern of
    `freqmaps.correlation._joint_nearest`); the resample's matrix is never held whole."""
    u, counts = torch.unique(b, return_counts=True)
    m = len(u)
    step = _chunk_rows(m, D.device, None)
    rows_buf, block_buf = D.new_empty(min(step, m), D.shape[1]), D.new_empty(min(step, m), m)

    def block_of(start: int, stop: int) -> torch.Tensor:
        rows = torch.index_select(D, 0, u[start:stop], out=rows_buf[: stop - start])
        return torch.gather(rows, 1, u.expand(stop - start, m), out=block_buf[: stop - start])

    r = _nearest(m, step, block_of, estimator.neighbours).repeat_interleave(counts.to(D.device), 0)
    return estimator.estimate(r, squared=True).dimension


def _idcor_from(D_a: torch.Tensor, D_e: torch.Tensor, D_j: torch.Tensor, b: torch.Tensor,
                estimator: Estimator) -> float:
    return idcor_score(dimension_of_resample(D_a, b, estimator), dimension_of_resample(D_e, b, estimator),
                       dimension_of_resample(D_j, b, estimator))


def _interval(estimate: float, values: torch.Tensor, jackknife: Callable[[], torch.Tensor] | None, level: float,
              method: Method) -> Interval:
    """Percentile or BCa interval from the resampled values (B,); `jackknife` gives the n leave-one-out values."""
    values = values.double()
    finite = values[torch.isfinite(values)]
    if len(finite) < 2:
        raise UserInputError("the bootstrap produced fewer than 2 finite values; give it more pairs")
    alpha = (1 - level) / 2
    quantiles = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    if method == "bca":
        normal = torch.distributions.Normal(0.0, 1.0)
        share_below = ((finite < estimate).double().mean() + 0.5 * (finite == estimate).double().mean())
        z0 = normal.icdf(share_below.clamp(1e-6, 1 - 1e-6))
        theta = jackknife().double()
        d = theta.mean() - theta
        denominator = 6 * d.square().sum().pow(1.5)
        a = (d.pow(3).sum() / denominator) if denominator > 0 else torch.tensor(0.0, dtype=torch.float64)
        z = normal.icdf(quantiles)
        quantiles = normal.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    elif method != "percentile":
        raise UserInputError(f"method must be 'percentile' or 'bca', got {method!r}")
    low, high = torch.quantile(finite, quantiles).tolist()
    return Interval(estimate, low, high, level, method, values)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise UserInputError(f"level must be in (0, 1), got {level}")


def bootstrap_idcor(A: torch.Tensor, E: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                    method: Method = "percentile", seed: int = 0, fraction: float = 0.9,
                    estimator: Estimator | None = None) -> Interval:
    """Confidence interval for IdCor(A, E) over pairs. A: (n, da), E: (n, de), row i of both the same image.

    The estimate is `freqmaps.correlation.idcor`'s with the same `estimator` (default TwoNN(fraction)) and the
    same float32 storage of the distances; each resample costs three O(n^2) gathers and nearest-neighbour
    searches of the three matrices computed once. BCa's jackknife costs n more.
    """
    estimator = estimator or TwoNN(fraction)
    _check_pair(A, E)
    D_a = squared_distances(standardize_rows(A), dtype=torch.float32)
    D_e = squared_distances(standardize_rows(E), dtype=torch.float32)
    D_j = D_a + D_e  # the joint set's squared distances (squared distances add over concatenated features)
    return _bootstrap_rows(lambda b: _idcor_from(D_a, D_e, D_j, b, estimator), len(A), A.device, resamples,
                           level, method, seed)


def _bootstrap_rows(statistic: Callable[[torch.Tensor], float], n: int, device: torch.device, resamples: int,
                    level: float, method: Method, seed: int) -> Interval:
    """Interval for statistic(rows) -> float, a function of a row-index tensor (m,) into the n pairs. A resample
    on which the statistic cannot be computed (too few distinct points) gives nan and is left out."""
    _check_level(level)
    estimate = statistic(torch.arange(n, device=device))
    draws = resample_indices(n, resamples, seed).to(device)

    def value(b: torch.Tensor) -> float:
        try:
            return statistic(b)
        except UserInputError:  # a resample of too few distinct points for the estimator: not a value
            return math.nan

    values = torch.tensor([value(b) for b in draws], dtype=torch.float64)

    def jackknife() -> torch.Tensor:
        everyone = torch.arange(n, device=device)
        return torch.tensor([statistic(everyone[everyone != i]) for i in range(n)], dtype=torch.float64)

    return _interval(estimate, values, jackknife, level, method)


def bootstrap_svcca(A: torch.Tensor, E: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                    method: Method = "percentile", seed: int = 0, keep: float = 0.99) -> Interval:
    """Confidence interval for svcca(A, E, keep) over pairs; A: (n, da), E: (n, de)."""
    _check_pair(A, E)
    return _bootstrap_rows(lambda b: svcca(A[b], E[b], keep), len(A), A.device, resamples, level, method, seed)


def bootstrap_cka(A: torch.Tensor, E: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                  method: Method = "percentile", seed: int = 0) -> Interval:
    """Confidence interval for linear cka(A, E) over pairs; A: (n, da), E: (n, de)."""
    _check_pair(A, E)
    return _bootstrap_rows(lambda b: cka(A[b], E[b]), len(A), A.device, resamples, level, method, seed)


def bootstrap_cosine(A: torch.Tensor, E: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                     method: Method = "percentile", seed: int = 0) -> Interval:
    """Confidence interval for the mean paired cosine of rows of A and E, both (n, d)."""
    _check_pair(A, E)
    cosines = pair_cosines(A, E)
    return _bootstrap_rows(lambda b: float(cosines[b].mean()), len(A), A.device, resamples, level, method, seed)


@dataclass
class CorrelationIntervals:
    """Bootstrap intervals of every pair measure, from the same resampled pairs (same seed)."""

    idcor: Interval
    svcca: Interval
    cka: Interval
    cosine: Interval

    def scalars(self) -> dict[str, float]:
        """idcor_ci_low, idcor_ci_high, svcca_ci_low, ... for tables and loggers."""
        out: dict[str, float] = {}
        for name in ("idcor", "svcca", "cka", "cosine"):
            out |= getattr(self, name).scalars(name)
        return out


def bootstrap_correlation(A: torch.Tensor, E: torch.Tensor, resamples: int = 1000, level: float = 0.95,
                          method: Method = "percentile", seed: int = 0) -> CorrelationIntervals:
    """Intervals for IdCor, SVCCA, CKA and the mean cosine of pooled, flattened maps A, E: (n, d) each."""
    args = dict(resamples=resamples, level=level, method=method, seed=seed)
    return CorrelationIntervals(bootstrap_idcor(A, E, **args), bootstrap_svcca(A, E, **args),
                                bootstrap_cka(A, E, **args), bootstrap_cosine(A, E, **args))


__all__ = ["CorrelationIntervals", "Interval", "bootstrap_cka", "bootstrap_correlation", "bootstrap_cosine",
           "bootstrap_idcor", "bootstrap_svcca", "resample_indices"]
