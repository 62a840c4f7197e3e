"""Bootstrap intervals over pairs: the gathered resample equals an independent recomputation, the estimate is
idcor's, BCa matches scipy's on the cosine, and the intervals separate dependent from independent pairs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from freqmaps.bootstrap import (
    bootstrap_correlation, bootstrap_cosine, bootstrap_idcor, dimension_of_resample, resample_indices,
)
from freqmaps.correlation import idcor, squared_distances, standardize_rows
from freqmaps.errors import UserInputError
from freqmaps.intrinsic_dimension import TwoNN


def paired_sets(n: int, dependent: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A: points on a 3-d manifold in 20 dims; E: a noisy nonlinear image of the same latent (dependent) or of
    an independent latent."""
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, 3, generator=g, dtype=torch.float64)
    w = z if dependent else torch.rand(n, 3, generator=g, dtype=torch.float64)
    mix_a = torch.randn(3, 20, generator=g, dtype=torch.float64)
    mix_e = torch.randn(3, 16, generator=g, dtype=torch.float64)
    A = torch.sin(2 * z @ mix_a) + 0.01 * torch.randn(n, 20, generator=g, dtype=torch.float64)
    E = torch.cos(2 * w @ mix_e) + 0.01 * torch.randn(n, 16, generator=g, dtype=torch.float64)
    return A, E


def twonn_numpy(points: np.ndarray, counts: np.ndarray, fraction: float = 0.9) -> float:
    """TwoNN of a resample written out: the distinct points drawn (`points`, each drawn `counts` times), squared
    distances among them, r1 == 0 or r1 == r2 dropped, each log(r2/r1) repeated by its count, least squares
    through the origin of -log(1 - i/N) on the sorted values."""
    d = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    two = np.sort(d, axis=1)[:, :2]
    r1, r2 = np.sqrt(two[:, 0]), np.sqrt(two[:, 1])
    good = (r1 > 0) & (r1 != r2)
    log_mu = np.sort(np.repeat(np.log(r2[good] / r1[good]), counts[good]))
    N = len(log_mu)
    k = min(math.floor(N * fraction), N - 1)
    x, y = log_mu[:k], -np.log1p(-np.arange(1, k + 1) / N)
    return float(x @ y / (x @ x))


def test_resampled_twonn_equals_explicit_recomputation():
    A, _ = paired_sets(120, dependent=True)
    S = standardize_rows(A)
    D = squared_distances(S)
    for b in resample_indices(120, 3, seed=5):
        assert len(torch.unique(b)) < 120  # the resample really repeats points
        u, counts = torch.unique(b, return_counts=True)
        expected = twonn_numpy(S[u].numpy(), counts.numpy())
        assert dimension_of_resample(D, b, TwoNN(0.9)) == pytest.approx(expected, rel=1e-9)


def test_estimate_is_idcor_and_intervals_separate_dependence():
    A, E = paired_sets(200, dependent=True)
    dependent = bootstrap_idcor(A, E, resamples=200, seed=1)
    assert dependent.estimate == pytest.approx(idcor(A, E, permutations=0).idcor, abs=1e-6)
    assert dependent.low <= dependent.estimate <= dependent.high
    assert dependent.low > 0.3  # strongly dependent pairs: the whole interval far from 0
    A, E = paired_sets(200, dependent=False)
    independent = bootstrap_idcor(A, E, resamples=200, seed=1)
    assert independent.low < 0 < independent.high or abs(independent.estimate) < independent.high - independent.low
    assert independent.high < dependent.low


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_cosine_interval_matches_scipy(method):
    from scipy.stats import bootstrap

    g = torch.Generator().manual_seed(3)
    A = torch.rand(150, 8, generator=g, dtype=torch.float64)
    E = A + 0.5 * torch.rand(150, 8, generator=g, dtype=torch.float64)
    ours = bootstrap_cosine(A, E, resamples=20000, method=method, seed=2)
    cosines = torch.nn.functional.cosine_similarity(A, E, dim=1).numpy()
    theirs = bootstrap((cosines,), np.mean, n_resamples=20000, method=method, random_state=0).confidence_interval
    width = theirs.high - theirs.low
    assert ours.estimate == pytest.approx(cosines.mean(), abs=1e-12)
    # Monte Carlo error of an endpoint at 20,000 resamples is about 1% of the width
    assert ours.low == pytest.approx(theirs.low, abs=0.05 * width)
    assert ours.high == pytest.approx(theirs.high, abs=0.05 * width)


def test_bca_shifts_a_skewed_statistic_like_scipy():
    from scipy.stats import bootstrap

    g = torch.Generator().manual_seed(4)
    A = torch.rand(80, 4, generator=g, dtype=torch.float64)
    E = torch.rand(80, 4, generator=g, dtype=torch.float64) ** 6  # skewed cosines
    percentile = bootstrap_cosine(A, E, resamples=20000, method="percentile", seed=0)
    bca = bootstrap_cosine(A, E, resamples=20000, method="bca", seed=0)
    cosines = torch.nn.functional.cosine_similarity(A, E, dim=1).numpy()
    ref_p = bootstrap((cosines,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    ref_b = bootstrap((cosines,), np.mean, n_resamples=20000, method="BCa", random_state=0).confidence_interval
    assert np.sign(bca.low - percentile.low) == np.sign(ref_b.low - ref_p.low)


def test_bootstrap_correlation_gives_every_measure_and_rejects_bad_input():
    A, E = paired_sets(60, dependent=True)
    intervals = bootstrap_correlation(A[:, :16], E, resamples=50)
    scalars = intervals.scalars()
    assert set(scalars) == {f"{m}_ci_{side}" for m in ("idcor", "svcca", "cka", "cosine") for side in ("low", "high")}
    assert all(intervals.svcca.values.isfinite()) and intervals.cka.low <= intervals.cka.estimate <= intervals.cka.high
    with pytest.raises(UserInputError, match="resamples"):
        bootstrap_idcor(A, E, resamples=1)
    with pytest.raises(UserInputError, match="level"):
        bootstrap_idcor(A, E, level=1.5)


@pytest.mark.slow
def test_idcor_intervals_cover_the_generating_value():
    """20 draws of 200 pairs of 3-dimensional clouds sharing 2 latent dimensions (generating IdCor 2/3), and 20
    of independent clouds (IdCor 0): the 95% percentile interval (100 resamples) covers the generating value in
    at least 18 of each 20 (90%). The intervals are somewhat conservative (freqmaps.intrinsic_dimension: the
    resampled spread of TwoNN is 1.15-1.3 times its spread over draws), so they cover 2/3 although TwoNN's
    estimate sits below it."""
    from freqmaps.power import simulated_pairs

    for shared, truth in ((2, 2 / 3), (0, 0.0)):
        covered = 0
        for i in range(20):
            A, E = simulated_pairs(200, 3, 3, shared, generator=torch.Generator().manual_seed(100 * shared + i))
            interval = bootstrap_idcor(A, E, resamples=100, seed=i)
            covered += interval.low <= truth <= interval.high
        assert covered >= 18, (shared, covered)
