"""Boundary geometry against ground truth: a classifier whose boundary is a known quadric (closed-form principal
curvatures) recovered by both Hessian-vector products; batched Lanczos against a dense eigendecomposition; the
curvature detector on digits with DeepFool adversarials; the model left as it was; bad inputs reported."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from datamodules.digits import load_digits_tensors
from freqmaps.attacks import DeepFool
from freqmaps.errors import UserInputError
from freqmaps.geometry import (
    BoundaryHessian,
    boundary_points,
    connect,
    evaluate_detector,
    lanczos,
    principal_curvatures,
    roc_auc,
    shared_directions,
    vulnerability,
)
from freqmaps.models import zoo_model


class Quadratic(nn.Module):
    """Two logits differing by F(x) = (u^T A u) / 2 + b^T u + c with u = x - 1/2: F's Hessian is A everywhere."""

    def __init__(self, dim: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        m = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        b = torch.randn(dim, generator=generator, dtype=torch.float64)
        self.register_buffer("A", (m + m.T) / 4)
        self.register_buffer("b", b / b.norm())
        self.scale = nn.Linear(1, 1).double()  # a parameter and a submodule, to check they are left alone
        self.c = 0.3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.flatten(1) - 0.5
        f = 0.5 * ((u @ self.A) * u).sum(1) + u @ self.b + self.c
        return torch.stack([f, torch.zeros_like(f)], 1)


def closed_form(model: Quadratic, z: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k (|κ|) eigenvalues of P A P / ‖∇F‖ on the tangent plane at each z: (B, D) -> (B, k)."""
    rows = []
    for point in z.flatten(1) - 0.5:
        g = model.A @ point + model.b
        n = g / g.norm()
        projection = torch.eye(len(g), dtype=g.dtype) - torch.outer(n, n)
        values = torch.linalg.eigvalsh(projection @ model.A @ projection) / g.norm()
        values = values[values.abs() > 1e-12]  # drop the normal's zero
        rows.append(values[values.abs().argsort(descending=True)][:k])
    return torch.stack(rows)


@pytest.fixture(scope="module")
def quadric():
    model = Quadratic(16, seed=0).eval()
    x = (0.5 + 0.02 * torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    return model, x.clamp(0, 1), torch.zeros(6, dtype=torch.long)


@pytest.mark.parametrize("method", ["exact", "finite"])
def test_both_hessian_products_recover_a_quadric_boundarys_curvatures(quadric, method):
    model, x, y = quadric
    result = principal_curvatures(model, x, y, k=5, method=method, h=0.1, steps=15)
    boundary = result.boundary
    assert bool(boundary.valid.all())
    with torch.no_grad():  # z on the boundary: F(z) within the bisection's width
        f = model(boundary.z)
    assert float((f[:, 0] - f[:, 1]).abs().max()) < 1e-5
    truth = closed_form(model, boundary.z, 5)
    # float64: both are exact up to rounding on a quadratic (its gradient is linear), Lanczos on the whole plane
    torch.testing.assert_close(result.curvatures, truth, atol=1e-9, rtol=1e-9)
    u = result.directions.flatten(2)
    torch.testing.assert_close(u @ u.transpose(1, 2), torch.eye(5, dtype=u.dtype).expand(6, 5, 5), atol=1e-9, rtol=0)
    normal = BoundaryHessian(model, boundary.z, boundary.y, boundary.adv).normal
    assert float(torch.einsum("bkd,bd->bk", u, normal).abs().max()) < 1e-9  # tangent to the boundary


def test_lanczos_matches_a_dense_eigendecomposition():
    generator = torch.Generator().manual_seed(0)
    batch, dim, k = 3, 60, 4
    q = torch.linalg.qr(torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64)).Q
    spectrum = torch.randn(batch, dim, generator=generator, dtype=torch.float64) * 0.3
    spectrum[:, :k] = torch.tensor([5.0, -4.0, 3.0, -2.5], dtype=torch.float64)  # separated extremes
    matrices = q @ torch.diag_embed(spectrum) @ q.transpose(1, 2)
    values, vectors, _ = lanczos(lambda v: torch.einsum("bij,bj->bi", matrices, v),
                                 torch.randn(batch, dim, generator=generator, dtype=torch.float64), 30, k)
    dense, dense_vectors = torch.linalg.eigh(matrices)
    order = dense.abs().argsort(1, descending=True)[:, :k]
    torch.testing.assert_close(values, dense.gather(1, order), atol=1e-8, rtol=0)
    alignment = torch.einsum("bkd,bdk->bk", vectors, dense_vectors.gather(2, order[:, None].expand(-1, dim, -1)))
    torch.testing.assert_close(alignment.abs(), torch.ones(batch, k, dtype=torch.float64), atol=1e-6, rtol=0)


def test_lanczos_residuals_are_the_ritz_pairs_residual_norms():
    """After too few steps to converge, the free residual estimate equals ‖A v − θ v‖ computed by hand, and every
    Ritz value lies within its residual of an eigenvalue."""
    generator = torch.Generator().manual_seed(1)
    batch, dim, k = 2, 80, 6
    q = torch.linalg.qr(torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64)).Q
    matrices = q @ torch.diag_embed(torch.randn(batch, dim, generator=generator, dtype=torch.float64)) @ q.mT
    operator = lambda v: torch.einsum("bij,bj->bi", matrices, v)  # noqa: E731
    values, vectors, residuals = lanczos(operator, torch.randn(batch, dim, generator=generator, dtype=torch.float64),
                                         12, k)
    by_hand = (torch.einsum("bij,bkj->bki", matrices, vectors) - values[..., None] * vectors).norm(dim=2)
    torch.testing.assert_close(residuals, by_hand, atol=1e-10, rtol=1e-8)
    assert float(residuals.max()) > 0.1  # 12 steps: not all converged, so the check is not vacuous
    gap = (values[..., None] - torch.linalg.eigvalsh(matrices)[:, None, :]).abs().amin(2)
    assert bool((gap <= residuals + 1e-12).all())


@pytest.fixture(scope="module")
def digits():
    """The zoo's digits SmallCNN (98% test accuracy) and 48 test digits."""
    x, y = load_digits_tensors(32, 1)
    return zoo_model("digits_small_cnn").eval(), x[-48:], y[-48:]


def test_the_detector_separates_deepfool_adversarials_on_digits(digits):
    model, x, y = digits
    result = evaluate_detector(model, x, y, {"deepfool": DeepFool(norm="l2", steps=50, candidates=3)}, fpr=0.1,
                               directions=6, h=0.1)
    (row,) = result.rows
    assert row["success"] > 0.9 and row["auc"] > 0.7  # measured 0.81 here (0.80 with 12 directions; chance 0.5)
    assert (result.clean.score > result.threshold).float().mean() <= 0.1 + 1e-6
    assert row["recovery"] > 0.3  # measured about 0.5; chance: 1/9 of the other classes


def test_curvatures_vulnerability_and_shared_directions_on_digits(digits):
    model, x, y = digits
    before = copy.deepcopy(model.state_dict())
    model.train()
    modes = [m.training for m in model.modules()]
    x, y = x[:8], y[:8]
    result = principal_curvatures(model, x, y, k=6, h=0.1, steps=16)
    batched = result.curvatures
    alone = torch.cat([principal_curvatures(model, x[i:i + 1], y[i:i + 1], k=6, h=0.1, steps=16, seed=i,
                                            boundary=result.boundary[i:i + 1]).curvatures for i in range(3)])
    torch.testing.assert_close(batched[:3], alone, rtol=1e-3, atol=1e-3)  # per image = batched
    assert bool(result.boundary.valid.all()) and bool(torch.isfinite(batched).all())
    assert bool((batched.abs().diff(dim=1) <= 1e-6).all())  # |κ| descending
    vulnerable = vulnerability(model, result, dims=(6,), steps=20)
    table = vulnerable.table()
    # the curved directions are the vulnerable ones: smaller norms than random subspaces of the same dimension
    assert table[-1]["curved_median"] < table[-1]["random_median"]
    shared = shared_directions(result)
    assert shared.overlap.shape == (8, 8) and 0 <= shared.mean <= 1 and shared.random == pytest.approx(6 / 1024)
    # the model is as it was: weights bit-identical, train/eval modes restored, no parameter gradient
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    model.eval()


def test_paths_between_same_class_digits_stay_in_the_class(digits):
    model, x, y = digits
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    ones = ((y == y[0]) & correct).nonzero().squeeze(1)[:3]
    pairs = torch.tensor([[int(ones[0]), int(ones[1])], [int(ones[0]), int(ones[2])]])
    result = connect(model, x, y, pairs, samples=8, max_points=16)
    for path, connected in zip(result.paths, result.connected):
        if connected:  # every sampled point of a connected path is classified as the class
            t = torch.linspace(0, 1, 9)[:, None, None, None, None]
            points = (path[:-1][None] + t * (path[1:] - path[:-1])[None]).flatten(0, 1)
            with torch.no_grad():
                assert bool((model(points).argmax(1) == y[0]).all())
    assert bool(result.connected.any()) and bool((result.length[result.connected] >= 1 - 1e-6).all())


def test_bad_inputs_give_clear_errors_or_are_reported(quadric, digits):
    model, x, y = quadric
    with pytest.raises(UserInputError, match=r"k must be in \[1, 15\]"):
        principal_curvatures(model, x, y, k=16)
    with pytest.raises(UserInputError, match="h must be > 0"):
        principal_curvatures(model, x, y, k=2, h=0.0)
    with pytest.raises(UserInputError, match="h must be > 0"):
        principal_curvatures(model, x, y, k=2, h=-1.0, method="finite")
    wrong = torch.ones_like(y)  # every image classified 0: labelled 1, they are misclassified -> reported as nan
    result = principal_curvatures(model, x, wrong, k=2, steps=4)
    assert not bool(result.boundary.correct.any()) and bool(result.curvatures.isnan().all())
    boundary = boundary_points(model, x, torch.tensor([0, 1, 0, 0, 0, 0]))
    assert boundary.valid.tolist() == [True, False, True, True, True, True]
    with pytest.raises(UserInputError, match="one class each"):
        connect(model, x, torch.tensor([0, 1, 0, 0, 0, 0]), torch.tensor([[0, 1]]))
    with pytest.raises(UserInputError, match="ROC AUC needs"):
        roc_auc(torch.zeros(0), torch.ones(3))
