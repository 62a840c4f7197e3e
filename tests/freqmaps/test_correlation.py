"""TwoNN, IdCor, SVCCA, CKA and cosine on point sets whose answer is known, against independent oracles
(scikit-dimension's TwoNN, distances recomputed from scratch, textbook CKA/CCA formulas)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import skdim
import torch

from freqmaps.correlation import (
    _two_smallest,
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

# twonn against skdim.id.TwoNN on the same points: both fit the same sorted ratios, so they agree to float64
# rounding of the distances (observed ~1e-15 relative); 1e-9 leaves room for BLAS differences only.
SKDIM_REL = 1e-9


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_manifold(n: int, dim: int, ambient: int, seed: int) -> torch.Tensor:
    """n Gaussian points on a random dim-dimensional linear subspace of R^ambient: (n, ambient) float64."""
    g = generator(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) @ torch.randn(dim, ambient, generator=g,
                                                                              dtype=torch.float64)


def torus(n: int, dim: int, seed: int) -> torch.Tensor:
    """n uniform points on the flat dim-torus, embedded (curved) in R^(2 dim): (n, 2 dim) float64."""
    t = 2 * math.pi * torch.rand(n, dim, generator=generator(seed), dtype=torch.float64)
    return torch.cat([t.cos(), t.sin()], 1)


def sphere(n: int, dim: int, seed: int) -> torch.Tensor:
    """n uniform points on the unit dim-sphere in R^(dim + 1): (n, dim + 1) float64."""
    x = torch.randn(n, dim + 1, generator=generator(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def swiss_roll(n: int, seed: int) -> torch.Tensor:
    """n points on the (2-dimensional, curved) swiss roll in R^3: (n, 3) float64."""
    g = generator(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    h = 20 * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.stack([t * t.cos(), h, t * t.sin()], 1)


def exact_squared_distances(X: torch.Tensor) -> torch.Tensor:
    """Oracle: squared distances from coordinate differences (no Gram shortcut), float64."""
    X = X.double()
    return torch.cdist(X, X, compute_mode="donot_use_mm_for_euclid_dist") ** 2


# ---------------------------------------------------------------------------------------------- TwoNN


@pytest.mark.parametrize("X", [linear_manifold(700, 5, 40, 0), torus(700, 3, 1), linear_manifold(300, 8, 40, 2),
                               swiss_roll(500, 3)], ids=["linear-5-in-40", "torus-3", "linear-8-small-n", "swiss"])
def test_twonn_agrees_with_scikit_dimension(X):
    oracle = skdim.id.TwoNN(discard_fraction=0.1).fit(X.numpy()).dimension_
    assert twonn(X) == pytest.approx(oracle, rel=SKDIM_REL)


def test_twonn_drops_duplicates_and_ties_like_spec():
    """Points on an integer grid have tied neighbours (r1 == r2) and copies have r1 == 0: docs/method.md §3 drops both.
    skdim keeps ties, so the oracle is skdim fed the (r1, r2) pairs that survive that rule."""
    grid = torch.stack(torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij"), -1).reshape(-1, 2)
    scattered = 20 + 11 * torch.rand(300, 2, generator=generator(4))  # away from the grid
    X = torch.cat([grid, scattered, grid[:10], scattered[:10]]).double()
    nearest = exact_squared_distances(X).sqrt().sort(dim=1).values
    r1, r2 = nearest[:, 1], nearest[:, 2]
    keep = (r1 > 0) & (r1 != r2)
    assert (r1 == 0).sum() == 40 and (r1 == r2).sum() > 100  # the case really has duplicates and ties
    oracle = skdim.id.TwoNN(discard_fraction=0.1, dist=True).fit(torch.stack([r1, r2], 1)[keep].numpy())
    assert twonn(X) == pytest.approx(oracle.dimension_, rel=SKDIM_REL)


@pytest.mark.parametrize("width", [5, 255, 256, 300, 1000])
def test_two_smallest_equals_topk_with_ties(width):
    """The segment-minimum search gives torch.topk's two smallest values, also with repeated values (a tied
    minimum gives it twice), infinities and a last segment shorter than the others."""
    g = generator(width)
    for block in (torch.rand(40, width, generator=g), torch.randint(0, 30, (40, width), generator=g).double()):
        block[:, ::7] = math.inf
        block[:10, 1:3] = -1  # a repeated minimum inside one segment
        r1, r2 = _two_smallest(block.clone())
        expected = torch.topk(block, 2, dim=1, largest=False).values
        assert torch.equal(r1, expected[:, 0]) and torch.equal(r2, expected[:, 1])


def test_twonn_takes_a_distance_matrix():
    X = torus(400, 3, 3)
    assert twonn(exact_squared_distances(X).sqrt(), distances=True) == pytest.approx(twonn(X), rel=1e-12)
    noisy_diagonal = exact_squared_distances(X).sqrt() + 1e-3 * torch.eye(400)  # as torch.cdist's rounding
    assert twonn(noisy_diagonal, distances=True) == pytest.approx(twonn(X), rel=1e-12)
    with pytest.raises(UserInputError, match="non-negative"):
        twonn(-torch.ones(5, 5), distances=True)


@pytest.mark.parametrize(
    "X, dimension",
    [(linear_manifold(2000, 4, 30, 4), 4), (linear_manifold(2000, 10, 50, 5), 10), (sphere(2000, 2, 6), 2),
     (sphere(2000, 5, 6), 5), (torus(2000, 3, 7), 3), (swiss_roll(2000, 8), 2)],
    ids=["linear-4", "linear-10", "sphere-2", "sphere-5", "torus-3", "swiss-roll-2"],
)
def test_twonn_recovers_manifold_dimension(X, dimension):
    assert twonn(X) == pytest.approx(dimension, rel=0.08)


def test_twonn_fraction_and_minimum_size():
    X = torus(500, 2, 9)
    assert twonn(X, fraction=0.5) != twonn(X)
    assert twonn(X, fraction=1.0) == pytest.approx(twonn(X), rel=0.2)  # the last point (F = 1) is still left out
    with pytest.raises(UserInputError, match="at least 3 points"):
        twonn(X[:2])
    with pytest.raises(UserInputError, match="fraction"):
        twonn(X, fraction=0)


def test_squared_distances_match_differences_and_keep_duplicates_exact():
    X = linear_manifold(300, 6, 40, 10) + 1e3  # far from the origin: |x|^2 >> distances
    X = torch.cat([X, X[:5]])
    D = squared_distances(X)
    assert torch.allclose(D, exact_squared_distances(X), rtol=1e-9, atol=0)
    assert torch.equal(D, D.T) and (D[torch.arange(5), 300 + torch.arange(5)] == 0).all()


# ---------------------------------------------------------------------------------------------- IdCor


def test_idcor_of_a_set_with_itself_is_one_with_smallest_p():
    X = linear_manifold(500, 6, 30, 9)
    result = idcor(X, X, permutations=50)
    assert result.idcor == pytest.approx(1.0, abs=1e-12)
    assert result.p_value == pytest.approx(1 / 51)
    assert result.id_joint == pytest.approx(result.id_a) and result.id_a == pytest.approx(result.id_e)
    assert result.null.shape == (50,) and (result.null > result.id_joint).all()


def test_idcor_sees_through_a_nonlinear_invertible_transform():
    X = torus(600, 3, 10)
    Z = X @ torch.randn(6, 6, generator=generator(11), dtype=torch.float64)
    E = Z + Z**3 / 3  # an invertible linear map, then a strictly increasing map of each coordinate
    result = idcor(X, E, permutations=50)
    assert result.idcor > 0.8
    assert result.p_value == pytest.approx(1 / 51)


@pytest.mark.parametrize("seed", [0, 1])
def test_idcor_of_independent_sets_is_near_zero_with_large_p(seed):
    A, E = torus(1000, 2, 12 + seed), torus(1000, 2, 40 + seed)
    result = idcor(A, E, permutations=30)
    assert abs(result.idcor) < 0.15
    assert result.p_value > 0.1
    assert result.id_joint == pytest.approx(result.id_a + result.id_e, rel=0.1)


def joint_ids_by_recomputing(A: torch.Tensor, E: torch.Tensor, permutations: int, seed: int) -> list[float]:
    """Oracle: the paper's way: concatenate [A | E[perm]] and recompute every distance (by differences)."""
    A_n, E_n = standardize_rows(A), standardize_rows(E)
    g = generator(seed)
    perms = [torch.arange(len(A))] + [torch.randperm(len(A), generator=g) for _ in range(permutations)]
    return [twonn(exact_squared_distances(torch.cat([A_n, E_n[p]], 1)).sqrt(), distances=True) for p in perms]


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-9), (torch.float32, 1e-6)])
def test_fast_permutations_equal_recomputing_every_distance(dtype, rel):
    A = linear_manifold(300, 5, 25, 14)
    E = torus(300, 3, 15) + 0.1 * linear_manifold(300, 6, 6, 16)
    result = idcor(A, E, permutations=4, seed=3, chunk_size=64, dtype=dtype)
    oracle = joint_ids_by_recomputing(A, E, 4, seed=3)
    assert result.id_joint == pytest.approx(oracle[0], rel=rel)
    assert result.null.tolist() == pytest.approx(oracle[1:], rel=rel)
    assert result.id_a == pytest.approx(twonn(standardize_rows(A)), rel=rel)


def test_idcor_chunking_changes_nothing():
    A, E = torus(257, 2, 17), torus(257, 2, 18)
    whole = idcor(A, E, permutations=5, seed=1)
    pieces = idcor(A, E, permutations=5, seed=1, chunk_size=10)
    assert torch.equal(whole.null, pieces.null) and whole.id_joint == pieces.id_joint
    assert not torch.equal(whole.null, idcor(A, E, permutations=5, seed=2).null)


def test_idcor_rejects_unpaired_sets():
    with pytest.raises(UserInputError, match="same images"):
        idcor(torch.rand(10, 3), torch.rand(11, 3))
    with pytest.raises(UserInputError, match="at least 3"):
        idcor(torch.rand(2, 3), torch.rand(2, 3))


# ------------------------------------------------------------------------------------ SVCCA, CKA, cosine


def orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator(seed), dtype=torch.float64))
    return q


def test_svcca_and_cka_are_one_for_identical_sets_and_invariant_to_rotation_scale_shift():
    X = linear_manifold(400, 12, 12, 17) + torch.randn(400, 12, generator=generator(170), dtype=torch.float64)
    Y = torch.tanh(X @ torch.randn(12, 9, generator=generator(171), dtype=torch.float64))
    moved = 3.0 * X @ orthogonal(12, 18) + 5.0
    for measure in (svcca, cka):
        assert measure(X, X) == pytest.approx(1.0, abs=1e-9)
        assert measure(X, moved) == pytest.approx(1.0, abs=1e-9)
        assert measure(moved, Y) == pytest.approx(measure(X, Y), abs=1e-9)


def test_svcca_is_invariant_to_invertible_linear_maps_but_cka_is_not():
    X = torch.randn(400, 8, generator=generator(19), dtype=torch.float64)
    mixed = X @ torch.randn(8, 8, generator=generator(190), dtype=torch.float64)
    stretched = X * torch.tensor([0.5, 1, 2, 3, 0.7, 1.5, 2.5, 1.2], dtype=torch.float64)
    assert svcca(X, mixed, keep=1.0) == pytest.approx(1.0, abs=1e-9)
    assert svcca(X, stretched, keep=1.0) == pytest.approx(1.0, abs=1e-9)
    assert cka(X, stretched) < 0.95


def test_svcca_is_the_mean_canonical_correlation():
    """A = [z1, z2], E = [z1, w] with w independent: canonical correlations 1 and ~0, mean ~1/2."""
    g = generator(22)
    z, w = torch.randn(3000, 2, generator=g, dtype=torch.float64), torch.randn(3000, 1, generator=g,
                                                                                dtype=torch.float64)
    assert svcca(z, torch.cat([z[:, :1], w], 1), keep=1.0) == pytest.approx(0.5, abs=0.03)
    # keep = 0.9 drops E's low-variance direction 0.1 * w: only the perfect correlation is left
    assert svcca(z, torch.cat([z[:, :1], 0.1 * w], 1), keep=0.9) == pytest.approx(1.0, abs=1e-5)


def cka_by_hsic(A: torch.Tensor, E: torch.Tensor) -> float:
    """Oracle: Kornblith et al.'s HSIC form with the centring matrix, tr(K H L H) / sqrt(tr(KHKH) tr(LHLH))."""
    n = len(A)
    H = torch.eye(n, dtype=torch.float64) - 1 / n
    K, L = H @ A.double() @ A.double().T @ H, H @ E.double() @ E.double().T @ H
    return float((K * L).sum() / ((K * K).sum() * (L * L).sum()).sqrt())


@pytest.mark.parametrize("n, d", [(50, 200), (300, 6)], ids=["wide", "tall"])
def test_cka_matches_the_hsic_formula(n, d):
    g = generator(23)
    A = torch.randn(n, d, generator=g)
    E = torch.sin(A[:, : d // 2] * 2) + 0.5 * torch.randn(n, d // 2, generator=g)
    assert cka(A, E) == pytest.approx(cka_by_hsic(A, E), rel=1e-10)


def test_svcca_and_cka_are_low_for_independent_sets():
    g = generator(20)
    A, E = torch.randn(1000, 10, generator=g), torch.randn(1000, 10, generator=g)
    assert svcca(A, E) < 0.15
    assert cka(A, E) < 0.05


def test_paired_cosine_matches_numpy():
    g = generator(24)
    A, E = torch.rand(50, 30, generator=g), torch.rand(50, 30, generator=g)
    result = paired_cosine(A, E)
    a, e = A.double().numpy(), E.double().numpy()
    cos = (a * e).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(e, axis=1)
    assert result.mean == pytest.approx(cos.mean(), rel=1e-12) and result.std == pytest.approx(cos.std(), rel=1e-9)
    assert paired_cosine(A, 3 * A).mean == pytest.approx(1.0) and paired_cosine(A, -A).mean == pytest.approx(-1.0)
    with pytest.raises(UserInputError, match="all-zero row"):
        paired_cosine(torch.cat([A[:3], torch.zeros(1, 30)]), E[:4])


# ------------------------------------------------------------------------------------- maps end to end


def test_pooling_follows_the_paper():
    g = generator(25)
    maps = torch.rand(3, 3, 224, 224, generator=g)
    pooled = pool_and_flatten(maps)
    assert pooled.shape == (3, 3 * 32 * 32)
    assert pooled[1, 32 * 32 + 5 * 32 + 2] == maps[1, 1, 35:42, 14:21].max()
    small = torch.rand(3, 3, 32, 32, generator=g)
    assert torch.equal(pool_and_flatten(small), small.flatten(1))
    assert pool_and_flatten(small, kernel=4).shape == (3, 3 * 8 * 8)


def test_correlate_maps_pairs_by_image_index():
    g = generator(21)
    maps = torch.rand(40, 3, 8, 8, generator=g)
    ess_index = torch.arange(40) * 3 + 7
    order = torch.randperm(40, generator=g)[:30]  # 30 of the images, shuffled, plus two with no essential map
    adversarial = torch.cat([2 * maps[order], torch.rand(2, 3, 8, 8, generator=g)])
    adv_index = torch.cat([ess_index[order], torch.tensor([1000, 1001])])
    result = correlate_maps(maps, adversarial, ess_index, adv_index, permutations=10)
    assert result.n_pairs == 30 and torch.equal(result.index, ess_index[order].sort().values)
    assert result.cosine.mean == pytest.approx(1.0) and result.cosine.std == pytest.approx(0.0, abs=1e-9)
    assert result.idcor.idcor == pytest.approx(1.0, abs=1e-5) and result.idcor.null.shape == (10,)
    assert result.svcca == pytest.approx(1.0) and result.cka == pytest.approx(1.0)
    assert set(result.scalars()) >= {"n_pairs", "idcor", "idcor_p", "svcca", "cka", "cosine_mean", "cosine_std"}


def test_correlate_maps_rejects_bad_input():
    maps = torch.rand(5, 1, 8, 8)
    with pytest.raises(UserInputError, match="differ in shape"):
        correlate_maps(maps, torch.rand(5, 3, 8, 8), torch.arange(5), torch.arange(5))
    with pytest.raises(UserInputError, match="only 2 images"):
        correlate_maps(maps, maps, torch.arange(5), torch.tensor([0, 1, 7, 8, 9]))
    with pytest.raises(UserInputError, match="repeats an image index"):
        correlate_maps(maps, maps, torch.tensor([0, 1, 1, 2, 3]), torch.arange(5))
    with pytest.raises(UserInputError, match="one image index per map"):
        correlate_maps(maps, maps, torch.arange(4), torch.arange(5))
