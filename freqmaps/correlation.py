"""How strongly essential and adversarial maps align: IdCor (+ permutation p-value), SVCCA, linear CKA, cosine.

docs/method.md §3. Inputs are paired sets `A` (adversarial) and `E` (essential), each (n, d): row i of both describes
image i. Every function takes torch tensors (on any device; the work runs there) and returns plain floats or
small dataclasses.

References: Facco, d'Errico, Rodriguez, Laio 2017 (TwoNN); Basile et al. 2025 (IdCor; frequency maps);
Raghu et al. 2017 (SVCCA); Kornblith et al. 2019 (CKA).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from freqmaps.errors import UserInputError
from freqmaps.intrinsic_dimension import Estimate, Estimator, TwoNN

if TYPE_CHECKING:
    from freqmaps.bootstrap import Interval

# Squared distances from the Gram identity |x|^2 + |y|^2 - 2 x.y lose their relative precision by cancellation
# when they are tiny next to |x|^2 + |y|^2; below this fraction they are recomputed from differences, so
# duplicates get exactly 0 (TwoNN drops them) and near-duplicates keep an accurate distance.
_CANCELLATION = 1e-4
# Entries per segment in _two_smallest's segment minima (64 float32 = four cache lines).
_SEGMENT = 64


def _check_points(X: torch.Tensor, name: str, min_points: int = 3) -> None:
    if X.dim() != 2:
        raise UserInputError(f"{name} must be a 2-D (n, d) tensor of points, got shape {tuple(X.shape)}")
    if X.shape[0] < min_points:
        raise UserInputError(f"{name} needs at least {min_points} points (rows), got {X.shape[0]}")
    if X.shape[1] < 1:
        raise UserInputError(f"{name} has no features (shape {tuple(X.shape)})")
    if not torch.isfinite(torch.stack(torch.aminmax(X))).all():  # NaN and +-inf reach the extremes
        raise UserInputError(f"{name} holds NaN or infinite values")


def _check_pair(A: torch.Tensor, E: torch.Tensor, min_points: int = 3) -> None:
    _check_points(A, "A", min_points)
    _check_points(E, "E", min_points)
    if A.shape[0] != E.shape[0]:
        raise UserInputError(
            f"A and E must hold the same images, row for row: {A.shape[0]} rows versus {E.shape[0]}")
    if A.device != E.device:
        raise UserInputError(f"A and E are on different devices ({A.device}, {E.device}); move one")


def _chunk_rows(n: int, device: torch.device, chunk_size: int | None) -> int:
    """Rows per block of an (n, n) matrix: about 8M entries on CPU, 64M on a GPU. Few large calls: on shared
    cores every multi-threaded call can wait a scheduler slice for its threads, so small blocks are slow."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise UserInputError(f"chunk_size must be a positive number of rows, got {chunk_size}")
        return min(chunk_size, n)
    target = 2**26 if device.type == "cuda" else 2**23
    return max(1, min(n, target // n))


def _squared_distance_rows(X: torch.Tensor, sq: torch.Tensor, start: int, stop: int,
                           first_column: int = 0) -> torch.Tensor:
    """Squared distances from points start..stop-1 to points first_column..n-1. X: (n, d) float64,
    sq: (n,) = |x|^2 -> (stop - start, n - first_column) float64, exact zeros between identical points."""
    rows, columns = X[start:stop], X[first_column:]
    scale = sq[start:stop, None] + sq[None, first_column:]
    block = torch.addmm(scale, rows, columns.T, alpha=-2)
    i, j = torch.nonzero(block <= scale.mul_(_CANCELLATION), as_tuple=True)
    step = max(1, 2**22 // X.shape[1])
    for s in range(0, len(i), step):
        ii, jj = i[s:s + step], j[s:s + step]
        block[ii, jj] = (rows[ii] - columns[jj]).square().sum(1)
    return block


def squared_distances(X: torch.Tensor, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """All pairwise squared Euclidean distances. X: (n, d) -> (n, n) in `dtype` on X's device.

    Computed in float64 from the Gram matrix, 256 rows at a time and only on and above the diagonal (the
    rest mirrored, so about half the n^2 d work of a full product), with tiny distances recomputed from
    differences (exact zeros for identical points), then stored in `dtype`. Extra memory: one block of rows.
    """
    _check_points(X, "X", 1)
    X = X.double()
    sq = X.square().sum(1)
    n = X.shape[0]
    out = torch.empty(n, n, dtype=dtype, device=X.device)
    for start in range(0, n, 256):
        stop = min(start + 256, n)
        block = _squared_distance_rows(X, sq, start, stop, first_column=start)
        own = block[:, : stop - start]
        own.copy_(own.triu() + own.triu(1).T)  # the block's own pairs: exactly symmetric
        out[start:stop, start:] = block
        out[stop:, start:stop] = block[:, stop - start:].T
    return out


def _two_smallest(block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's smallest and second smallest entry: the values of torch.topk(block, 2, largest=False) (a
    repeated smallest value gives both), without its per-row selection, which costs several times one pass.

    block: (r, m) -> r1, r2: (r,). One vectorised pass takes the minimum of every segment of _SEGMENT
    entries; the row minimum is the smallest of them, and the second smallest is the smaller of the runner-up
    inside the winning segment and the smallest of the other segments.
    """
    r, m = block.shape
    if m < 4 * _SEGMENT:
        nearest = torch.topk(block, 2, dim=1, largest=False).values
        return nearest[:, 0], nearest[:, 1]
    full = m // _SEGMENT
    segment_min = block.new_empty(r, -(-m // _SEGMENT))
    torch.amin(block[:, : full * _SEGMENT].unflatten(1, (full, _SEGMENT)), 2, out=segment_min[:, :full])
    if full < segment_min.shape[1]:
        torch.amin(block[:, full * _SEGMENT:], 1, out=segment_min[:, full])
    r1, winner = segment_min.min(1)
    segment_min.scatter_(1, winner[:, None], math.inf)
    columns = winner[:, None] * _SEGMENT + torch.arange(_SEGMENT, device=block.device)
    past_end = columns >= m
    segment = torch.gather(block, 1, columns.clamp_(max=m - 1)).masked_fill_(past_end, math.inf)
    segment.scatter_(1, segment.argmin(1, keepdim=True), math.inf)
    return r1, torch.minimum(segment.amin(1), segment_min.amin(1))


def _nearest(n: int, step: int, block_of: Callable[[int, int], torch.Tensor], k: int = 2) -> torch.Tensor:
    """Each point's k smallest entries among the other points, ascending, `step` rows at a time.

    block_of(start, stop) gives rows start..stop-1 of an (n, n) matrix of distances (or squared distances)
    as a tensor this function may overwrite: each row's own entry (the diagonal) is set to +inf and ignored.
    An identical point gives r1 = 0, which the estimators drop. Returns (n, k) in the blocks' dtype; k = 2 takes
    `_two_smallest`'s one-pass search, larger k torch.topk.
    """
    if not 2 <= k < n:
        raise UserInputError(f"{k} nearest neighbours need more than {k} points, got {n}")
    out = None
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = block_of(start, stop)
        block.diagonal(start).fill_(math.inf)
        if out is None:
            out = block.new_empty(n, k)
        if k == 2:
            out[start:stop, 0], out[start:stop, 1] = _two_smallest(block)
        else:
            out[start:stop] = torch.topk(block, k, dim=1, largest=False).values
    return out


def _joint_nearest(D_a: torch.Tensor, D_e: torch.Tensor, step: int,
                   k: int = 2) -> Callable[[torch.Tensor | None], torch.Tensor]:
    """A function of a permutation `perm` (or None: the identity) giving the k nearest squared distances of
    every point of the joint set [A | E[perm]] from D_J = D_a + P D_e P^T. D_a, D_e: (n, n) ->
    (perm: (n,) -> (n, k)).

    Row i of P D_e P^T is D_e[perm[i], perm]: rows by index_select, columns by torch.gather with a broadcast
    index (faster than index_select along dim 1), into two (step, n) buffers allocated once and reused by
    every call (fresh buffers of this size come from the system as untouched pages, which costs more than
    the gather).
    """
    n = D_a.shape[0]
    rows_buf, block_buf = D_a.new_empty(step, n), D_a.new_empty(step, n)

    def nearest(perm: torch.Tensor | None) -> torch.Tensor:
        if perm is None:
            return _nearest(n, step, lambda start, stop: torch.add(
                D_a[start:stop], D_e[start:stop], out=block_buf[: stop - start]), k)

        def block_of(start: int, stop: int) -> torch.Tensor:
            rows = torch.index_select(D_e, 0, perm[start:stop], out=rows_buf[: stop - start])
            block = torch.gather(rows, 1, perm.expand(stop - start, n), out=block_buf[: stop - start])
            return block.add_(D_a[start:stop])

        return _nearest(n, step, block_of, k)

    return nearest


def intrinsic_dimension(X: torch.Tensor, estimator: Estimator | None = None, *,
                        distances: bool = False) -> Estimate:
    """Intrinsic dimension of points X: (n, d) (n > the estimator's neighbours) by `estimator`
    (`freqmaps.intrinsic_dimension`; default TwoNN, the paper's), with its standard error.

    With `distances=True`, X is an (n, n) matrix of (not squared) distances (its diagonal, e.g. the rounding
    noise of torch.cdist, is ignored). Points are handled in row blocks (no (n, n) matrix held), their distances
    in float64 on X's device.
    """
    estimator = estimator or TwoNN()
    n = X.shape[0] if X.dim() == 2 else 0
    step = _chunk_rows(n, X.device, None)
    if distances:
        if X.dim() != 2 or X.shape[0] != X.shape[1]:
            raise UserInputError(f"a distance matrix must be square (n, n), got shape {tuple(X.shape)}")
        if n < 3:
            raise UserInputError(f"TwoNN needs at least 3 points, got {n}")
        if not torch.isfinite(X).all() or (X < 0).any():
            raise UserInputError("a distance matrix must be finite and non-negative")
        r = _nearest(n, step, lambda start, stop: X[start:stop].to(torch.float64, copy=True), estimator.neighbours)
        return estimator.estimate(r, squared=False)
    _check_points(X, "X")
    X = X.double()
    sq = X.square().sum(1)
    r = _nearest(n, step, lambda start, stop: _squared_distance_rows(X, sq, start, stop), estimator.neighbours)
    return estimator.estimate(r, squared=True)


def twonn(X: torch.Tensor, *, distances: bool = False, fraction: float = 0.9) -> float:
    """Intrinsic dimension by TwoNN (Facco et al. 2017, Sci. Rep. 7:12140), exactly as docs/method.md §3.

    X: (n, d) points (n >= 3), or with `distances=True` an (n, n) matrix of (not squared) distances. For each
    point mu = r2 / r1 (second over first nearest-neighbour distance); points with r1 == 0 (duplicates) or
    r1 == r2 are dropped; with the N remaining ratios sorted and F_i = i / N, the dimension is the slope of the
    least-squares line through the origin of -log(1 - F_i) against log mu_i over the first floor(fraction * N)
    points. `intrinsic_dimension(X, TwoNN(fraction))` gives it with its standard error.
    """
    return intrinsic_dimension(X, TwoNN(fraction), distances=distances).dimension


def standardize_rows(X: torch.Tensor) -> torch.Tensor:
    """IdCor's preprocessing (Basile et al.'s code): each column to (x - mean) / (std + 1e-6) (unbiased std),
    then each row to unit L2 norm. X: (n, d) -> (n, d) float64."""
    X = X.to(torch.float64, copy=True)
    std, mean = torch.std_mean(X, 0)
    return F.normalize(X.sub_(mean).div_(std.add_(1e-6)), dim=1)


@dataclass
class IdCorResult:
    """Intrinsic-dimension correlation of paired sets A, E and its permutation test.

    idcor = (id_a + id_e - id_joint) / max(id_a, id_e): 1 when the joint dimension is the smaller of the two
    (one set determines the other), 0 when dimensions add (independent sets). p_value =
    (#{null < id_joint} + 1) / (permutations + 1) (NaN without permutations). null: (permutations,) float64,
    the joint ids with E's rows shuffled. se_a, se_e, se_joint: each dimension's standard error (from the
    estimator's likelihood, `freqmaps.intrinsic_dimension`); estimator: its name.
    """

    idcor: float
    p_value: float
    id_a: float
    id_e: float
    id_joint: float
    null: torch.Tensor
    se_a: float = math.nan
    se_e: float = math.nan
    se_joint: float = math.nan
    estimator: str = "twonn"


def idcor(
    A: torch.Tensor,
    E: torch.Tensor,
    permutations: int = 100,
    seed: int = 0,
    chunk_size: int | None = None,
    fraction: float = 0.9,
    dtype: torch.dtype = torch.float32,
    estimator: Estimator | None = None,
) -> IdCorResult:
    """Intrinsic-dimension correlation (Basile et al., "Intrinsic dimension correlation", ICLR 2025) with the
    permutation p-value of docs/method.md §3.

    A: (n, da), E: (n, de), n >= 3, row i of both the same image. Each set goes through `standardize_rows`;
    id_a, id_e, id_joint are the dimensions of A, E and [A | E] (n, da + de) by `estimator` (default TwoNN
    with `fraction`, the paper's; `freqmaps.intrinsic_dimension.LevinaBickel` or `Gride` instead). The k-th of the N =
    `permutations` shuffles is the k-th `torch.randperm(n)` of a CPU generator seeded with `seed`; it pairs row
    i of A with row perm[i] of E, and p = (#{shuffled id_J < id_J} + 1) / (N + 1): a correlated pair has a
    smaller joint dimension than its shuffles, so p = 1 / (N + 1), the smallest possible.

    Speed: squared distances add over concatenated features, D_J = D_A + P D_E P^T, so the two (n, n) squared
    distance matrices are computed once (float64 Gram, O(n^2 d)) and each permutation costs one O(n^2) gather,
    add and two-smallest search, done `chunk_size` rows at a time (default: about 8M entries per block on CPU).
    Memory: the two matrices in `dtype` (n = 10,000: 800 MB in float32) plus two blocks (64 MB by default).

    Precision: `dtype` is only the storage of the finished squared distances (relative rounding 6e-8 in
    float32), which moves a TwoNN dimension by about 1e-7 relative (2e-8 observed), far below its sampling
    error; ties (r1 == r2) present in float64 stay ties. torch.float64 agrees with a float64 recomputation of
    every distance to about 1e-12, at twice the memory and more time.
    """
    _check_pair(A, E)
    estimator = estimator or TwoNN(fraction)
    if permutations < 0:
        raise UserInputError(f"permutations must be >= 0, got {permutations}")
    n, k = A.shape[0], estimator.neighbours
    step = _chunk_rows(n, A.device, chunk_size)
    D_a = squared_distances(standardize_rows(A), dtype=dtype)
    D_e = squared_distances(standardize_rows(E), dtype=dtype)
    a = estimator.estimate(_nearest(n, step, lambda start, stop: D_a[start:stop].clone(), k), squared=True)
    e = estimator.estimate(_nearest(n, step, lambda start, stop: D_e[start:stop].clone(), k), squared=True)
    joint_nearest = _joint_nearest(D_a, D_e, step, k)
    joint = estimator.estimate(joint_nearest(None), squared=True)
    g = torch.Generator().manual_seed(seed)
    null = torch.tensor([estimator.estimate(joint_nearest(torch.randperm(n, generator=g).to(A.device)),
                                            squared=True).dimension for _ in range(permutations)], dtype=torch.float64)
    p_value = (int((null < joint.dimension).sum()) + 1) / (permutations + 1) if permutations else math.nan
    score = idcor_score(a.dimension, e.dimension, joint.dimension)
    return IdCorResult(score, p_value, a.dimension, e.dimension, joint.dimension, null, a.standard_error,
                       e.standard_error, joint.standard_error, estimator.name)


def idcor_score(id_a: float, id_e: float, id_joint: float) -> float:
    """(id_a + id_e - id_joint) / max(id_a, id_e): 1 when one set determines the other, 0 when independent."""
    return (id_a + id_e - id_joint) / (id_a + id_e - min(id_a, id_e))


def _centered(X: torch.Tensor) -> torch.Tensor:
    X = X.double()
    return X - X.mean(0)


def _principal_basis(X: torch.Tensor, keep: float) -> torch.Tensor:
    """Orthonormal basis (n, k) of the top singular directions of the centred X that explain a `keep`
    fraction of its variance (never directions beyond its numerical rank)."""
    U, S, _ = torch.linalg.svd(_centered(X), full_matrices=False)
    rank = int((S > S[0] * max(X.shape) * torch.finfo(S.dtype).eps).sum()) if S[0] > 0 else 0
    if rank == 0:
        raise UserInputError("SVCCA needs sets that vary: one set has the same row everywhere")
    explained = torch.cumsum(S[:rank] ** 2, 0) / (S[:rank] ** 2).sum()
    k = int(torch.searchsorted(explained, torch.tensor(keep, dtype=explained.dtype, device=explained.device)))
    return U[:, : min(k + 1, rank)]


def svcca(A: torch.Tensor, E: torch.Tensor, keep: float = 0.99) -> float:
    """SVCCA similarity (Raghu et al. 2017, NeurIPS): keep the top singular directions of each centred set
    that explain a `keep` fraction of its variance, then the mean canonical correlation between the two
    reduced sets (the singular values of U_A^T U_E for orthonormal bases U of their column spaces).

    A: (n, da), E: (n, de) -> float in [0, 1], in float64 on the inputs' device. Invariant to translation,
    rotation and isotropic scaling of either set, and with keep=1 to any invertible linear map. With
    k_A + k_E directions close to n the canonical correlations approach 1 whatever the data (CCA overfits);
    use n well above the number of kept directions.
    """
    _check_pair(A, E, 2)
    if not 0 < keep <= 1:
        raise UserInputError(f"keep must be a fraction of variance in (0, 1], got {keep}")
    U_a, U_e = _principal_basis(A, keep), _principal_basis(E, keep)
    return float(torch.linalg.svdvals(U_a.T @ U_e).clamp(0, 1).mean())


def cka(A: torch.Tensor, E: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019, ICML): ||E_c^T A_c||_F^2 / (||A_c^T A_c||_F ||E_c^T E_c||_F) with
    column-centred sets, computed through whichever of the (n, n) or (d, d) Gram forms is cheaper.

    A: (n, da), E: (n, de) -> float in [0, 1], float64. Invariant to translation, rotation and isotropic
    scaling of either set, not to anisotropic scaling.
    """
    _check_pair(A, E, 2)
    A, E = _centered(A), _centered(E)
    n, da, de = A.shape[0], A.shape[1], E.shape[1]
    if n * n * (da + de) < n * (da * de + da * da + de * de):
        K, L = A @ A.T, E @ E.T
        cross, norm_a, norm_e = (K * L).sum(), torch.linalg.matrix_norm(K), torch.linalg.matrix_norm(L)
    else:
        cross = torch.linalg.matrix_norm(E.T @ A) ** 2
        norm_a, norm_e = torch.linalg.matrix_norm(A.T @ A), torch.linalg.matrix_norm(E.T @ E)
    if norm_a == 0 or norm_e == 0:
        raise UserInputError("CKA needs sets that vary: one set has the same row everywhere")
    return float(cross / (norm_a * norm_e))


@dataclass
class CosineResult:
    """Cosine similarity of each pair (row i of A with row i of E): mean and std (population, as np.std in
    the paper's code) over the pairs."""

    mean: float
    std: float


def pair_cosines(A: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """A, E: (n, d) paired rows (raw maps, no standardisation) -> (n,) float64, the cosine of each pair."""
    if A.dim() != 2 or A.shape != E.shape:
        raise UserInputError(f"paired cosine needs two (n, d) tensors of equal shape, got {tuple(A.shape)} "
                             f"and {tuple(E.shape)}")
    A, E = A.double(), E.double()
    norms = A.norm(dim=1) * E.norm(dim=1)
    if (norms == 0).any():
        raise UserInputError(f"cosine is undefined for an all-zero row: rows "
                             f"{torch.nonzero(norms == 0).flatten().tolist()[:10]} of A or E; drop them")
    return (A * E).sum(1) / norms


def map_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row cosine (n,) float64 of two map sets a, b: (n, ...); 1 where both maps are zero, 0 where one is."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    both_zero = (a.norm(dim=1) == 0) & (b.norm(dim=1) == 0)
    return torch.where(both_zero, 1.0, F.cosine_similarity(a, b, dim=1))


def paired_cosine(A: torch.Tensor, E: torch.Tensor) -> CosineResult:
    """A, E: (n, d) paired rows (raw maps, no standardisation) -> CosineResult of the n cosines."""
    cos = pair_cosines(A, E)
    return CosineResult(float(cos.mean()), float(cos.std(correction=0)))


def pool_and_flatten(maps: torch.Tensor, kernel: int | None = None) -> torch.Tensor:
    """The paper's reduction before correlating: max-pool each map (kernel = stride), then flatten.

    maps: (n, C, H, W) -> (n, C * (H // kernel) * (W // kernel)), same dtype. Default kernel
    max(1, min(H, W) // 32): 1 at 32 px and below, 7 at 224 px, as in the paper (about 32 x 32 cells).
    """
    if maps.dim() != 4:
        raise UserInputError(f"maps must be (n, C, H, W), got shape {tuple(maps.shape)}")
    if kernel is None:
        kernel = max(1, min(maps.shape[-2:]) // 32)
    if kernel < 1 or kernel > min(maps.shape[-2:]):
        raise UserInputError(f"pooling kernel must be between 1 and the map size {min(maps.shape[-2:])}, "
                             f"got {kernel}")
    pooled = F.max_pool2d(maps, kernel) if kernel > 1 else maps
    return pooled.flatten(1)


@dataclass
class CorrelationResult:
    """Every measure between the adversarial (A) and essential (E) maps of the same `n_pairs` images.

    index: (n_pairs,) the image indices paired, ascending (row i of A and E is image index[i]).
    idcor_interval: IdCor's bootstrap confidence interval over pairs (`freqmaps.bootstrap`), None without one.
    """

    n_pairs: int
    index: torch.Tensor
    idcor: IdCorResult
    svcca: float
    cka: float
    cosine: CosineResult
    idcor_interval: Interval | None = None

    def scalars(self) -> dict[str, float]:
        """Flat name -> value dict for loggers and tables."""
        return {
            "n_pairs": self.n_pairs, "idcor": self.idcor.idcor, "idcor_p": self.idcor.p_value,
            "id_adversarial": self.idcor.id_a, "id_essential": self.idcor.id_e, "id_joint": self.idcor.id_joint,
            "id_adversarial_se": self.idcor.se_a, "id_essential_se": self.idcor.se_e,
            "id_joint_se": self.idcor.se_joint,
            "idcor_ci_low": self.idcor_interval.low if self.idcor_interval else math.nan,
            "idcor_ci_high": self.idcor_interval.high if self.idcor_interval else math.nan,
            "svcca": self.svcca, "cka": self.cka, "cosine_mean": self.cosine.mean, "cosine_std": self.cosine.std,
        }


def _check_index(index: torch.Tensor, maps: torch.Tensor, name: str) -> None:
    if maps.dim() != 4:
        raise UserInputError(f"{name} maps must be (n, C, H, W), got shape {tuple(maps.shape)}")
    if index.shape != (maps.shape[0],) or index.is_floating_point() or index.is_complex():
        raise UserInputError(f"{name}_index must be an integer tensor of shape ({maps.shape[0]},) (one image "
                             f"index per map), got {index.dtype} {tuple(index.shape)}")
    if len(torch.unique(index)) != len(index):
        raise UserInputError(f"{name}_index repeats an image index; each image may have one map")


def correlate_maps(
    essential: torch.Tensor,
    adversarial: torch.Tensor,
    essential_index: torch.Tensor,
    adversarial_index: torch.Tensor,
    permutations: int = 100,
    seed: int = 0,
    kernel: int | None = None,
    resamples: int = 0,
    estimator: Estimator | None = None,
) -> CorrelationResult:
    """Pair essential and adversarial maps by image index, pool and flatten them, and compute every measure.

    essential: (ne, C, H, W) with essential_index (ne,); adversarial: (na, C, H, W) with adversarial_index
    (na,): the dataset index of each map's image. Only images present in both are used (at least 3), in
    ascending index order; `pool_and_flatten(maps, kernel)` gives E and A, then `idcor(A, E, permutations,
    seed, estimator=estimator)` (default TwoNN, the paper's), `svcca`, `cka` and `paired_cosine`; with
    `resamples`, IdCor's 95% percentile bootstrap interval (`bootstrap_idcor` with that many resamples, seeded
    with `seed`, the same estimator; none when the pairs are too few for it).
    """
    from freqmaps.bootstrap import bootstrap_idcor  # it builds on this module's distances

    _check_index(essential_index, essential, "essential")
    _check_index(adversarial_index, adversarial, "adversarial")
    if essential.shape[1:] != adversarial.shape[1:]:
        raise UserInputError(f"essential and adversarial maps differ in shape: {tuple(essential.shape[1:])} "
                             f"versus {tuple(adversarial.shape[1:])}")
    e_sorted, e_order = essential_index.sort()
    a_sorted, a_order = adversarial_index.to(e_sorted.device).sort()
    common = e_sorted[torch.isin(e_sorted, a_sorted)]
    if len(common) < 3:
        raise UserInputError(f"only {len(common)} images have both an essential and an adversarial map; "
                             "IdCor (TwoNN) needs at least 3")
    E = pool_and_flatten(essential[e_order[torch.searchsorted(e_sorted, common)].to(essential.device)], kernel)
    A = pool_and_flatten(adversarial[a_order[torch.searchsorted(a_sorted, common)].to(adversarial.device)],
                         kernel)
    if resamples < 0:
        raise UserInputError(f"resamples must be >= 0, got {resamples}")
    result = CorrelationResult(n_pairs=len(common), index=common,
                               idcor=idcor(A, E, permutations, seed, estimator=estimator),
                               svcca=svcca(A, E), cka=cka(A, E), cosine=paired_cosine(A, E))
    if resamples:
        try:
            result.idcor_interval = bootstrap_idcor(A, E, resamples, seed=seed, estimator=estimator)
        except UserInputError:  # too few pairs for the resamples' dimensions: IdCor without an interval
            pass
    return result
