"""The intrinsic-dimension estimators: each against its oracle library (scikit-dimension's MLE, dadapy's TwoNN
and GRIDE at every scale, with its errors), the standard error against the spread over independent draws, GRIDE
at n1 = 1 against TwoNN's closed-form likelihood, and IdCor under each estimator on data with a known shared
dimension."""
from __future__ import annotations

import math

import pytest
import torch

from freqmaps.correlation import idcor, intrinsic_dimension, squared_distances
from freqmaps.errors import UserInputError
from freqmaps.intrinsic_dimension import Gride, LevinaBickel, TwoNN
from freqmaps.power import simulated_pairs


def cube(n: int, d: int = 5, ambient: int = 12, seed: int = 0, basis_seed: int = 0) -> torch.Tensor:
    """n points uniform in a d-dimensional unit cube, rotated into `ambient` dimensions (float64)."""
    q, _ = torch.linalg.qr(torch.randn(ambient, d, generator=torch.Generator().manual_seed(basis_seed),
                                       dtype=torch.float64))
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) @ q.T


def test_levina_bickel_is_scikit_dimensions_mle():
    skdim = pytest.importorskip("skdim")
    X = cube(800)
    for k in (5, 10, 20):
        ours = intrinsic_dimension(X, LevinaBickel(k))
        oracle = skdim.id.MLE().fit(X.numpy(), n_neighbors=k, comb="mle").dimension_
        assert ours.dimension == pytest.approx(oracle, rel=1e-9), k
        assert ours.standard_error == pytest.approx(ours.dimension / math.sqrt(800 * (k - 1)), rel=1e-12)


def test_twonn_and_gride_at_every_scale_are_dadapys():
    dadapy = pytest.importorskip("dadapy")
    X = cube(1000, seed=1)
    data = dadapy.Data(coordinates=X.numpy())
    dimension, _, _ = data.compute_id_2NN()
    assert intrinsic_dimension(X, TwoNN()).dimension == pytest.approx(dimension, rel=1e-8)
    ids, errors, _ = dadapy.Data(coordinates=X.numpy()).return_id_scaling_gride(range_max=16)
    for i, n1 in enumerate((1, 2, 4, 8)):
        ours = intrinsic_dimension(X, Gride(n1))
        assert ours.dimension == pytest.approx(ids[i], rel=1e-5), n1  # dadapy's search stops at eps 1e-7
        assert ours.standard_error == pytest.approx(errors[i], rel=1e-3), n1


def test_gride_at_the_first_scale_is_twonns_likelihood():
    """n1 = 1: mu = r2 / r1 is Pareto(d); the unbiased estimate is (N - 1) / sum(log mu), its error about
    d / sqrt(N) (Fisher information N / d^2)."""
    X = cube(500, seed=2)
    D = squared_distances(X).fill_diagonal_(math.inf)
    r = D.topk(2, dim=1, largest=False).values.sqrt()
    closed = (len(X) - 1) / float(torch.log(r[:, 1] / r[:, 0]).sum())
    ours = intrinsic_dimension(X, Gride(1))
    assert ours.dimension == pytest.approx(closed, rel=1e-10)
    assert ours.standard_error == pytest.approx(closed / math.sqrt(len(X)), rel=1e-8)


@pytest.mark.parametrize("estimator", [TwoNN(), LevinaBickel(10), Gride(1), Gride(4)])
def test_the_standard_error_is_the_spread_over_independent_draws(estimator):
    """60 independent clouds of 1000 points: the closed form counts points as independent, neighbouring points
    share neighbours, so the spread of the estimates is larger than the mean closed-form error, but by less than
    60% (200 draws measured 1.25x for TwoNN, 1.22x GRIDE n1=1, 1.30x n1=4, 1.39x Levina-Bickel)."""
    estimates = [intrinsic_dimension(cube(1000, seed=100 + i), estimator) for i in range(60)]
    spread = torch.tensor([e.dimension for e in estimates]).std().item()
    closed = sum(e.standard_error for e in estimates) / len(estimates)
    assert closed < spread < 1.6 * closed


@pytest.mark.parametrize("estimator", [TwoNN(), LevinaBickel(10), Gride(2)])
def test_idcor_under_each_estimator_finds_the_shared_dimensions(estimator):
    """Pairs of 3-dimensional Gaussian clouds sharing 3, 2 or 0 of their latent dimensions (generating IdCor 1,
    2/3, 0): IdCor orders them, is near 1 for a shared set and near 0 for independent sets."""
    scores = {}
    for shared in (3, 2, 0):
        A, E = simulated_pairs(600, 3, 3, shared, generator=torch.Generator().manual_seed(shared))
        result = idcor(A, E, permutations=20, estimator=estimator)
        assert result.estimator == estimator.name and result.se_joint > 0
        scores[shared] = result.idcor
    assert scores[3] > 0.95 and abs(scores[0]) < 0.15
    assert scores[0] < scores[2] < scores[3]


def test_bad_estimator_settings_are_refused():
    with pytest.raises(UserInputError, match="fraction must be in"):
        TwoNN(0)
    with pytest.raises(UserInputError, match="k >= 2"):
        LevinaBickel(1)
    with pytest.raises(UserInputError, match="n1 >= 1"):
        Gride(0)
    with pytest.raises(UserInputError, match="16 nearest neighbours need more than 16 points"):
        intrinsic_dimension(cube(10), Gride(8))
