"""TwoNN, IdCor, SVCCA, CKA and cosine on point sets whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import skdim
import torch

from freqmaps.correlation import (
    cka,
    correlate_maps,
    idcor,
    paired_cosine,
    pool_and_flatten,
    squared_distances,
    standardize_rows,
    svcca,
    twonn,
)
from freqmaps.errors import UserInputError


def linear_manifold(n: int, dim: int, ambient: int, seed: int) -> torch.Tensor:
    """n Gaussian points on a random dim-dimensional linear subspace of R^ambient: (n, ambient)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) @ torch.randn(dim, ambient, generator=g,
                                                                              dtype=torch.float64)


def torus3(n: int, seed: int) -> torch.Tensor:
    """n uniform points on the flat 3-torus embedded (curved) in R^6: (n, 6)."""
    t = 2 * math.pi * torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.cat([t.cos(), t.sin()], 1)


def sphere2(n: int, seed: int) -> torch.Tensor:
    """n uniform points on the unit 2-sphere in R^3: (n, 3)."""
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("X", [linear_manifold(700, 5, 20, 0), torus3(700, 1), linear_manifold(300, 8, 40, 2)])
def test_twonn_agrees_with_scikit_dimension(X):
    oracle = skdim.id.TwoNN(discard_fraction=0.1).fit(X.numpy()).dimension_
    assert twonn(X) == pytest.approx(oracle, rel=1e-9)


def test_twonn_takes_a_distance_matrix():
    X = torus3(400, 3)
    assert twonn(squared_distances(X).sqrt(), distances=True) == pytest.approx(twonn(X), rel=1e-12)


@pytest.mark.parametrize(
    "X, dimension",
    [(linear_manifold(2000, 4, 30, 4), 4), (linear_manifold(2000, 10, 50, 5), 10), (sphere2(2000, 6), 2),
     (torus3(2000, 7), 3)],
    ids=["linear-4", "linear-10", "sphere-2", "torus-3"],
)
def test_twonn_recovers_manifold_dimension(X, dimension):
    assert twonn(X) == pytest.approx(dimension, rel=0.12)


def test_twonn_drops_duplicates_and_ties():
    X = torus3(300, 8)
    with_duplicates = torch.cat([X, X[:20]])
    assert math.isfinite(twonn(with_duplicates))
    with pytest.raises(UserInputError, match="at least 3 points"):
        twonn(X[:2])


def test_idcor_of_a_set_with_itself_is_one_with_smallest_p():
    X = linear_manifold(500, 6, 30, 9)
    result = idcor(X, X, permutations=50)
    assert result.idcor == pytest.approx(1.0, abs=1e-9)
    assert result.p_value == pytest.approx(1 / 51)
    assert result.id_joint == pytest.approx(result.id_a)


def test_idcor_sees_through_a_nonlinear_invertible_transform():
    X = torus3(600, 10)
    M = torch.randn(6, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    Z = X @ M
    E = Z + Z**3 / 3  # strictly increasing elementwise, so invertible
    result = idcor(X, E, permutations=50)
    assert result.idcor > 0.7
    assert result.p_value == pytest.approx(1 / 51)


def torus2(n: int, seed: int) -> torch.Tensor:
    """n uniform points on the flat 2-torus embedded in R^4: (n, 4)."""
    t = 2 * math.pi * torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.cat([t.cos(), t.sin()], 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_idcor_of_independent_sets_is_near_zero_with_large_p(seed):
    A, E = torus2(1000, 12 + seed), torus2(1000, 40 + seed)
    result = idcor(A, E, permutations=30)
    assert abs(result.idcor) < 0.15
    assert result.p_value > 0.05
    assert result.id_joint == pytest.approx(result.id_a + result.id_e, rel=0.1)


def test_fast_permutations_equal_recomputing_every_distance():
    A, E = linear_manifold(300, 5, 25, 14), torus3(300, 15) + 0.1 * linear_manifold(300, 6, 6, 16)
    result = idcor(A, E, permutations=4, seed=3, chunk_size=64)
    g = torch.Generator().manual_seed(3)
    A_n, E_n = standardize_rows(A), standardize_rows(E)
    for null_id in result.null.tolist():
        perm = torch.randperm(300, generator=g)
        assert null_id == pytest.approx(twonn(torch.cat([A_n, E_n[perm]], 1)), rel=1e-9)
    assert result.id_joint == pytest.approx(twonn(torch.cat([A_n, E_n], 1)), rel=1e-9)


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_svcca_and_cka_are_one_for_identical_sets_and_their_rotations():
    X = linear_manifold(400, 12, 12, 17) + torch.randn(400, 12, dtype=torch.float64)
    moved = 3.0 * X @ orthogonal(12, 18) + 5.0
    for measure in (svcca, cka):
        assert measure(X, X) == pytest.approx(1.0, abs=1e-9)
        assert measure(X, moved) == pytest.approx(1.0, abs=1e-9)


def test_svcca_is_invariant_to_invertible_linear_maps_but_cka_is_not():
    X = torch.randn(400, 8, generator=torch.Generator().manual_seed(19), dtype=torch.float64)
    stretched = X * torch.tensor([0.5, 1, 2, 3, 0.7, 1.5, 2.5, 1.2], dtype=torch.float64)
    assert svcca(X, stretched, keep=1.0) == pytest.approx(1.0, abs=1e-9)
    assert cka(X, stretched) < 0.95


def test_svcca_and_cka_are_low_for_independent_sets():
    g = torch.Generator().manual_seed(20)
    A, E = torch.randn(1000, 10, generator=g), torch.randn(1000, 10, generator=g)
    assert svcca(A, E) < 0.15
    assert cka(A, E) < 0.05


def test_paired_cosine():
    A = torch.rand(50, 30)
    same, opposite = paired_cosine(A, A), paired_cosine(A, -A)
    assert same.mean == pytest.approx(1.0) and same.std == pytest.approx(0.0, abs=1e-6)
    assert opposite.mean == pytest.approx(-1.0)


def test_pooling_follows_the_paper():
    maps = torch.rand(3, 3, 224, 224)
    pooled = pool_and_flatten(maps)
    assert pooled.shape == (3, 3 * 32 * 32)
    assert pooled[0, 0] == maps[0, 0, :7, :7].max()
    small = torch.rand(3, 3, 32, 32)
    assert torch.equal(pool_and_flatten(small), small.flatten(1))


def test_correlate_maps_pairs_by_image_index():
    g = torch.Generator().manual_seed(21)
    maps = torch.rand(40, 3, 8, 8, generator=g)
    ess_index = torch.arange(40)
    adv_order = torch.randperm(40, generator=g)[:30]  # 30 of the images, shuffled, plus two with no pair
    adversarial = torch.cat([maps[adv_order], torch.rand(2, 3, 8, 8, generator=g)])
    adv_index = torch.cat([adv_order, torch.tensor([100, 101])])
    result = correlate_maps(maps, adversarial, ess_index, adv_index, permutations=10)
    assert result.n_pairs == 30 and torch.equal(result.index, adv_order.sort().values)
    assert result.cosine.mean == pytest.approx(1.0)
    assert result.idcor.idcor == pytest.approx(1.0)
    assert set(result.scalars()) >= {"idcor", "idcor_p", "svcca", "cka", "cosine_mean", "cosine_std"}


def test_correlate_maps_rejects_bad_input():
    maps = torch.rand(5, 1, 8, 8)
    with pytest.raises(UserInputError, match="differ in shape"):
        correlate_maps(maps, torch.rand(5, 3, 8, 8), torch.arange(5), torch.arange(5))
    with pytest.raises(UserInputError, match="only 2 images"):
        correlate_maps(maps, maps, torch.arange(5), torch.tensor([0, 1, 7, 8, 9]))
    with pytest.raises(UserInputError, match="same images"):
        idcor(torch.rand(10, 3), torch.rand(11, 3))
