"""How strongly essential and adversarial maps align: IdCor (+ permutation p-value), SVCCA, linear CKA, cosine.

SPEC §3. Inputs are paired sets `A` (adversarial) and `E` (essential), each (n, d): row i of both describes
image i. Every function takes torch tensors (any device) and returns plain floats or small dataclasses.

References: Facco et al. 2017 (TwoNN), Basile et al. 2024/2025 (IdCor), Raghu et al. 2017 (SVCCA),
Kornblith et al. 2019 (CKA).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from freqmaps.errors import UserInputError


def _check_points(X: torch.Tensor, name: str, min_points: int = 3) -> None:
    if X.dim() != 2:
        raise UserInputError(f"{name} must be a 2-D (n, d) tensor of points, got shape {tuple(X.shape)}")
    if X.shape[0] < min_points:
        raise UserInputError(f"{name} needs at least {min_points} points, got {X.shape[0]}")
    if not torch.isfinite(X).all():
        raise UserInputError(f"{name} holds NaN or infinite values")


def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances. X: (n, d) -> (n, n), exact zeros on the diagonal."""
    sq = (X * X).sum(1)
    D = (sq[:, None] + sq[None, :] - 2 * X @ X.T).clamp_min_(0)
    D.fill_diagonal_(0)
    return D


def _two_nearest(D_sq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distances to the first and second nearest other point. D_sq: (m, n) rows whose own point is
    marked +inf beforehand -> r1_sq, r2_sq: (m,)."""
    r = torch.topk(D_sq, 2, dim=1, largest=False).values
    return r[:, 0], r[:, 1]


def twonn_from_neighbours(r1: torch.Tensor, r2: torch.Tensor, fraction: float = 0.9) -> float:
    """TwoNN slope from first/second nearest-neighbour distances r1, r2: (n,) (not squared).

    mu = r2 / r1; points with r1 == 0 or r1 == r2 are dropped; mu sorted; F_i = i / N; the line through the
    origin of -log(1 - F) against log(mu), fitted by least squares on the first floor(fraction * N) points.
    """
    good = (r1 > 0) & (r1 != r2)
    mu = torch.sort((r2[good] / r1[good]).double()).values
    n = mu.numel()
    keep = int(n * fraction)
    if keep < 2:
        raise UserInputError(f"TwoNN needs at least 2 usable points after dropping duplicates, got {keep}")
    x = torch.log(mu[:keep])
    y = -torch.log1p(-torch.arange(1, keep + 1, dtype=torch.float64, device=mu.device) / n)
    return float((x @ y) / (x @ x))


def _twonn_squared(D_sq: torch.Tensor, fraction: float) -> float:
    """TwoNN from an (n, n) matrix of squared distances (its diagonal is ignored)."""
    r1_sq, r2_sq = _two_nearest(D_sq.clone().fill_diagonal_(float("inf")))
    return twonn_from_neighbours(r1_sq.sqrt(), r2_sq.sqrt(), fraction)


def twonn(X: torch.Tensor, *, distances: bool = False, fraction: float = 0.9) -> float:
    """Intrinsic dimension by TwoNN (Facco et al. 2017), exactly as SPEC §3.

    X: (n, d) points, or with `distances=True` an (n, n) symmetric matrix of (not squared) distances.
    """
    if distances:
        if X.dim() != 2 or X.shape[0] != X.shape[1]:
            raise UserInputError(f"a distance matrix must be square (n, n), got shape {tuple(X.shape)}")
        D_sq = X.double() ** 2
    else:
        _check_points(X, "X")
        D_sq = squared_distances(X.double())
    return _twonn_squared(D_sq, fraction)


def standardize_rows(X: torch.Tensor) -> torch.Tensor:
    """IdCor's preprocessing: (X - column mean) / (column std + 1e-6), then each row scaled to unit L2 norm."""
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    return F.normalize(X, dim=1)


@dataclass
class IdCorResult:
    """IdCor = (id_a + id_e - id_joint) / (id_a + id_e - min(id_a, id_e)); p_value by permutation;
    null: (permutations,) joint ids with the rows of E shuffled."""

    idcor: float
    p_value: float
    id_a: float
    id_e: float
    id_joint: float
    null: torch.Tensor


def _joint_id(D_a: torch.Tensor, D_e: torch.Tensor, perm: torch.Tensor | None, chunk_size: int,
              fraction: float) -> float:
    """TwoNN of the concatenation [A | E[perm]] from squared distances alone: D_J = D_A + P D_E P^T.
    Rows are processed in chunks of `chunk_size`, so extra memory is chunk_size x n."""
    n = D_a.shape[0]
    r1, r2 = torch.empty(n, dtype=D_a.dtype, device=D_a.device), torch.empty_like(D_a[0])
    for start in range(0, n, chunk_size):
        rows = torch.arange(start, min(start + chunk_size, n), device=D_a.device)
        block = D_a[rows]
        block = block + (D_e[rows] if perm is None else D_e[perm[rows]][:, perm])
        block[torch.arange(len(rows), device=D_a.device), rows] = float("inf")
        r1[rows], r2[rows] = _two_nearest(block)
    return twonn_from_neighbours(r1.sqrt(), r2.sqrt(), fraction)


def idcor(
    A: torch.Tensor,
    E: torch.Tensor,
    permutations: int = 100,
    seed: int = 0,
    chunk_size: int = 2048,
    fraction: float = 0.9,
    dtype: torch.dtype = torch.float64,
) -> IdCorResult:
    """Intrinsic-dimension correlation of paired sets (Basile et al.) with a permutation p-value.

    A: (n, da), E: (n, de), same n (row i of each is the same image). Each set is standardised
    (`standardize_rows`); ids by TwoNN of A, E and the joint [A | E]. p = (#{shuffled id_J < id_J} + 1) / (N + 1)
    with N `permutations` shuffles of E's rows. Squared distances add over concatenated features, so each
    permutation reuses the two (n, n) distance matrices: O(n^2) per permutation, not O(n^2 d).
    Memory: two (n, n) matrices in `dtype` plus a chunk_size x n block (n = 10,000 in float64: 1.6 GB).
    """
    _check_points(A, "A")
    _check_points(E, "E")
    if A.shape[0] != E.shape[0]:
        raise UserInputError(f"A and E must pair the same images: {A.shape[0]} rows versus {E.shape[0]}")
    D_a = squared_distances(standardize_rows(A.to(dtype)))
    D_e = squared_distances(standardize_rows(E.to(dtype)))
    id_a, id_e = _twonn_squared(D_a, fraction), _twonn_squared(D_e, fraction)
    id_joint = _joint_id(D_a, D_e, None, chunk_size, fraction)
    g = torch.Generator().manual_seed(seed)
    null = torch.tensor([
        _joint_id(D_a, D_e, torch.randperm(len(D_a), generator=g).to(D_a.device), chunk_size, fraction)
        for _ in range(permutations)
    ], dtype=torch.float64)
    p_value = (int((null < id_joint).sum()) + 1) / (permutations + 1)
    score = (id_a + id_e - id_joint) / (id_a + id_e - min(id_a, id_e))
    return IdCorResult(score, p_value, id_a, id_e, id_joint, null)


def _centered(X: torch.Tensor) -> torch.Tensor:
    return (X - X.mean(0)).double()


def svcca(A: torch.Tensor, E: torch.Tensor, keep: float = 0.99) -> float:
    """SVCCA similarity (Raghu et al. 2017): mean canonical correlation between the top singular directions of
    each centred set that explain a `keep` fraction of its variance. A: (n, da), E: (n, de) -> float in [0, 1].

    Invariant to translation, rotation and isotropic scaling of either set (and to any invertible linear map
    that keeps the retained subspace)."""
    _check_points(A, "A", 2)
    _check_points(E, "E", 2)
    bases = []
    for X in (A, E):
        U, S, _ = torch.linalg.svd(_centered(X), full_matrices=False)
        explained = torch.cumsum(S**2, 0) / (S**2).sum()
        k = int(torch.searchsorted(explained, torch.tensor(keep, dtype=explained.dtype))) + 1
        bases.append(U[:, : min(k, len(S))])
    rho = torch.linalg.svdvals(bases[0].T @ bases[1]).clamp(0, 1)
    return float(rho.mean())


def cka(A: torch.Tensor, E: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019): ||E_c^T A_c||_F^2 / (||A_c^T A_c||_F ||E_c^T E_c||_F) with centred
    sets. A: (n, da), E: (n, de) -> float in [0, 1]; invariant to rotation and isotropic scaling, not to
    anisotropic scaling."""
    _check_points(A, "A", 2)
    _check_points(E, "E", 2)
    A, E = _centered(A), _centered(E)
    cross = torch.linalg.matrix_norm(E.T @ A) ** 2
    return float(cross / (torch.linalg.matrix_norm(A.T @ A) * torch.linalg.matrix_norm(E.T @ E)))


@dataclass
class CosineResult:
    """Cosine similarity of each pair (row i of A with row i of E): mean and (unbiased) std over pairs."""

    mean: float
    std: float


def paired_cosine(A: torch.Tensor, E: torch.Tensor) -> CosineResult:
    """A, E: (n, d) paired rows -> CosineResult."""
    if A.shape != E.shape:
        raise UserInputError(f"paired cosine needs equal shapes, got {tuple(A.shape)} and {tuple(E.shape)}")
    cos = F.cosine_similarity(A.double(), E.double(), dim=1)
    return CosineResult(float(cos.mean()), float(cos.std()) if len(cos) > 1 else 0.0)


def pool_and_flatten(maps: torch.Tensor, kernel: int | None = None) -> torch.Tensor:
    """The paper's reduction before correlating: max-pool each map (kernel = stride), then flatten.

    maps: (n, C, H, W) -> (n, C * (H // kernel) * (W // kernel)). Default kernel max(1, H // 32): 1 at 32 px,
    7 at 224 px, as in the paper.
    """
    if maps.dim() != 4:
        raise UserInputError(f"maps must be (n, C, H, W), got shape {tuple(maps.shape)}")
    kernel = kernel or max(1, maps.shape[-1] // 32)
    pooled = F.max_pool2d(maps, kernel) if kernel > 1 else maps
    return pooled.flatten(1)


@dataclass
class CorrelationResult:
    """Every measure between essential and adversarial maps of the same `n_pairs` images (`index`)."""

    n_pairs: int
    index: torch.Tensor
    idcor: IdCorResult
    svcca: float
    cka: float
    cosine: CosineResult

    def scalars(self) -> dict[str, float]:
        """Flat name -> value dict for loggers and tables."""
        return {
            "n_pairs": self.n_pairs, "idcor": self.idcor.idcor, "idcor_p": self.idcor.p_value,
            "id_adversarial": self.idcor.id_a, "id_essential": self.idcor.id_e, "id_joint": self.idcor.id_joint,
            "svcca": self.svcca, "cka": self.cka, "cosine_mean": self.cosine.mean, "cosine_std": self.cosine.std,
        }


def _rows_of(index: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    """Positions in `index` of each value of `wanted` (all present)."""
    position = {v: i for i, v in enumerate(index.tolist())}
    return torch.tensor([position[v] for v in wanted.tolist()], dtype=torch.long)


def correlate_maps(
    essential: torch.Tensor,
    adversarial: torch.Tensor,
    essential_index: torch.Tensor,
    adversarial_index: torch.Tensor,
    permutations: int = 100,
    seed: int = 0,
    kernel: int | None = None,
) -> CorrelationResult:
    """Pair maps by image index (only indices present in both), pool and flatten, and compute every measure.

    essential: (ne, C, H, W) with essential_index (ne,); adversarial: (na, C, H, W) with adversarial_index (na,).
    """
    if essential.shape[1:] != adversarial.shape[1:]:
        raise UserInputError(
            f"essential and adversarial maps differ in shape: {tuple(essential.shape[1:])} vs "
            f"{tuple(adversarial.shape[1:])}"
        )
    for maps, index, name in ((essential, essential_index, "essential"), (adversarial, adversarial_index, "adversarial")):
        if index.shape != (maps.shape[0],):
            raise UserInputError(f"{name}_index must be ({maps.shape[0]},), got {tuple(index.shape)}")
    common = torch.tensor(sorted(set(essential_index.tolist()) & set(adversarial_index.tolist())), dtype=torch.long)
    if len(common) < 3:
        raise UserInputError(f"only {len(common)} images have both an essential and an adversarial map; need >= 3")
    E = pool_and_flatten(essential[_rows_of(essential_index, common)], kernel)
    A = pool_and_flatten(adversarial[_rows_of(adversarial_index, common)], kernel)
    return CorrelationResult(
        n_pairs=len(common), index=common, idcor=idcor(A, E, permutations, seed),
        svcca=svcca(A, E), cka=cka(A, E), cosine=paired_cosine(A, E),
    )
