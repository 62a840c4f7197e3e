"""Decision-boundary geometry (Fawzi, Moosavi-Dezfooli, Frossard, Soatto, CVPR 2018, "Empirical study of the
topology and geometry of deep networks"): principal curvatures of the boundary near images, the vulnerability of
the curved directions, their overlap across images, the connectivity of classification regions, and the
curvature detector of small adversarial perturbations.

Boundary points. For an image x of label y (classified correctly), L2 DeepFool (`freqmaps.attacks.DeepFool`)
gives x_adv of label a; a bisection on the segment [x, x_adv] puts z on the boundary of
F = f_y - f_a (F(z) = 0 up to the bisection's width): F > 0 on x's side.

Principal curvatures. With g = ∇F(z), n = g / ‖g‖ and P = I - n nᵀ the projection on the tangent plane, the
principal curvatures are the eigenvalues of P ∇²F(z) P / ‖g‖ on the tangent plane (the second fundamental form of
the level set F = 0, signed by F: κ < 0 along a direction in which the region of y, F > 0, is locally convex,
bending round x, and κ > 0 where it is concave). Hessian-vector products are exact (autograd double backward:
meaningful for smooth activations; a ReLU network is piecewise linear and its exact Hessian is zero almost
everywhere) or central differences of gradients, (∇F(z + h v) - ∇F(z - h v)) / 2h for unit v, with a
macroscopic step h (the authors' choice). The top-k (by |κ|) come from a Lanczos iteration with full
reorthogonalisation, batched over images: every step is one forward/backward of the whole batch.

Every function takes x: (B, C, H, W) in [0, 1] and y: (B,) int64 labels; the model runs in eval mode with its
parameters frozen (`freqmaps.inputs.frozen_eval`), gradients are taken only with respect to inputs, and the
model's modes and flags are restored afterwards.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from freqmaps.attacks.base import Attack, attacking, check_positive, margin
from freqmaps.attacks.deepfool import DeepFool
from freqmaps.errors import UserInputError
from freqmaps.inputs import check_images, check_labels, frozen_eval
from freqmaps.sampling import seeded_rng

HessianMethod = Literal["exact", "finite"]


def logit_difference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """F = f_y - f_adv, in float32 at least (float64 for a float64 model): x (B, C, H, W), y, adv (B,) -> (B,)."""
    logits = model(x)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return (logits.gather(1, y[:, None]) - logits.gather(1, adv[:, None])).squeeze(1)


@dataclass
class BoundaryPoints:
    """Where the images meet the boundary. x: (B, C, H, W) the clean images; y: (B,) labels; z: (B, C, H, W)
    points on the boundary of F = f_y - f_adv (x where not valid); adv: (B,) the class across (y where not valid);
    correct: (B,) bool, x classified as y; found: (B,) bool, DeepFool crossed the boundary; distance: (B,)
    ‖z - x‖₂ (nan where not valid)."""

    x: torch.Tensor
    y: torch.Tensor
    z: torch.Tensor
    adv: torch.Tensor
    correct: torch.Tensor
    found: torch.Tensor
    distance: torch.Tensor

    @property
    def valid(self) -> torch.Tensor:
        """(B,) bool: correctly classified and a boundary point found."""
        return self.correct & self.found

    def __getitem__(self, rows) -> BoundaryPoints:
        return BoundaryPoints(*(getattr(self, name)[rows] for name in
                                ("x", "y", "z", "adv", "correct", "found", "distance")))


def boundary_points(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 50, candidates: int = 10,
                    overshoot: float = 0.02, bisection_steps: int = 20) -> BoundaryPoints:
    """L2 DeepFool from each image, then `bisection_steps` halvings of [x, x_adv] keeping F > 0 at the start
    and F <= 0 at the end; z is the bracket's end point (just on the adversarial side, within 2^-steps of the
    segment). Images the model misclassifies (or that DeepFool does not fool) are reported in `correct` /
    `found`, not raised."""
    check_positive(bisection_steps=bisection_steps)
    with attacking(model, x, y) as (x, y):
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        attack = DeepFool(norm="l2", steps=steps, candidates=candidates, overshoot=overshoot, channels_last=False)
        result = attack.minimise(model, x, y)
        with torch.no_grad():
            adv = torch.where(result.success, model(result.x_adv).argmax(1), y)
            found = result.success & correct
            adv = torch.where(found, adv, y)
            low, high = torch.zeros(len(x), device=x.device), torch.ones(len(x), device=x.device)
            delta = result.x_adv - x
            for _ in range(bisection_steps):
                middle = (low + high) / 2
                inside = logit_difference(model, x + middle.view(-1, 1, 1, 1) * delta, y, adv) > 0
                low, high = torch.where(inside, middle, low), torch.where(inside, high, middle)
            z = torch.where(found.view(-1, 1, 1, 1), x + high.view(-1, 1, 1, 1) * delta, x)
        distance = torch.where(found, (z - x).flatten(1).norm(dim=1), math.nan)
    return BoundaryPoints(x, y, z, adv, correct, found, distance)


class BoundaryHessian:
    """Products with the curvature operator P ∇²F(z) P / ‖∇F(z)‖ of a batch of boundary points, batched.

    z: (B, C, H, W); y, adv: (B,). method "exact" (double backward; the graph of ∇F is kept between products)
    or "finite" (central differences of gradients with step h, one forward/backward of 2B images a product).
    `gradient`: (B, D) ∇F(z) flattened (D = C·H·W); `normal`: (B, D) unit. Call inside `frozen_eval`.
    """

    def __init__(self, model: nn.Module, z: torch.Tensor, y: torch.Tensor, adv: torch.Tensor,
                 method: HessianMethod = "finite", h: float = 0.05) -> None:
        if method not in ("exact", "finite"):
            raise UserInputError(f"unknown Hessian method {method!r}; choose exact or finite")
        if not h > 0:
            raise UserInputError(f"the finite-difference step h must be > 0, got {h}")
        self.model, self.y, self.adv, self.method, self.h = model, y, adv, method, h
        self.shape = z.shape
        self.z = z.detach().clone().requires_grad_()
        (grad,) = torch.autograd.grad(logit_difference(model, self.z, y, adv).sum(), self.z,
                                      create_graph=method == "exact")
        self._grad = grad
        self.gradient = grad.detach().flatten(1)
        self.gradient_norm = self.gradient.norm(dim=1)
        self.normal = self.gradient / self.gradient_norm.clamp_min(1e-12)[:, None]

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """v: (B, D) -> its component in each image's tangent plane (B, D)."""
        return v - (v * self.normal).sum(1, keepdim=True) * self.normal

    def hessian_products(self, v: torch.Tensor) -> torch.Tensor:
        """∇²F(z) v for v: (B, D), per image -> (B, D) (finite: the difference quotient along v / ‖v‖, scaled
        by ‖v‖)."""
        if self.method == "exact":
            (hv,) = torch.autograd.grad(self._grad, self.z, grad_outputs=v.view(self.shape), retain_graph=True)
            return hv.flatten(1)
        scale = v.norm(dim=1, keepdim=True).clamp_min(1e-30)
        step = (self.h * v / scale).view(self.shape)
        points = torch.cat([self.z.detach() + step, self.z.detach() - step])
        points = points.contiguous(memory_format=torch.channels_last).requires_grad_()  # ~10% faster convolutions
        twice = lambda t: torch.cat([t, t])  # noqa: E731
        (grad,) = torch.autograd.grad(logit_difference(self.model, points, twice(self.y), twice(self.adv)).sum(),
                                      points)
        plus, minus = grad.flatten(1).chunk(2)
        return (plus - minus) / (2 * self.h) * scale

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """The curvature operator on v: (B, D) -> (B, D)."""
        return self.project(self.hessian_products(self.project(v))) / self.gradient_norm.clamp_min(1e-12)[:, None]


def lanczos(operator: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int, k: int,
            project: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
            progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k Ritz pairs of largest |value| of symmetric operators, one per batch row, by `steps` Lanczos steps
    with full reorthogonalisation (twice per step), all rows at once.

    operator: (B, D) -> (B, D), symmetric per row on the subspace `project` maps onto; start: (B, D) nonzero
    start vectors (projected here). A row whose Krylov space closes early continues from a fresh vector
    orthogonal to it (its tridiagonal matrix then splits). Returns values (B, k), |values| descending, vectors
    (B, k, D), orthonormal, and residuals (B, k): ‖A v − θ v‖ of each pair, which for a linear operator is
    β_m |s_m| (the last off-diagonal times the last component of the Ritz vector of the tridiagonal matrix) and
    costs no product; an eigenvalue of A lies within it of θ.
    """
    batch, dim = start.shape
    generator = torch.Generator(device=start.device).manual_seed(0)
    basis = torch.zeros(batch, steps, dim, dtype=start.dtype, device=start.device)
    alpha = torch.zeros(batch, steps, dtype=start.dtype, device=start.device)
    beta = torch.zeros(batch, steps, dtype=start.dtype, device=start.device)

    def orthogonal(w: torch.Tensor, j: int) -> torch.Tensor:
        for _ in range(2):
            w = project(w - torch.einsum("bj,bjd->bd", torch.einsum("bjd,bd->bj", basis[:, :j], w), basis[:, :j]))
        return w

    q = project(start)
    q = q / q.norm(dim=1, keepdim=True)
    for j in tqdm(range(steps), desc="lanczos", unit="step", disable=not progress, leave=False):
        basis[:, j] = q
        w = operator(q)
        alpha[:, j] = (w * q).sum(1)
        w = orthogonal(w, j + 1)
        norm = w.norm(dim=1)
        if j == steps - 1:
            break
        closed = norm <= 1e-6 * alpha[:, : j + 1].abs().amax(1).clamp_min(1e-30)
        if closed.any():  # an invariant subspace: restart that row orthogonally, beta = 0 splits T
            fresh = orthogonal(torch.randn(batch, dim, generator=generator, device=start.device,
                                           dtype=start.dtype), j + 1)
            w = torch.where(closed[:, None], fresh, w)
            norm = torch.where(closed, 0.0, norm)
        beta[:, j] = norm
        q = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
    tridiagonal = torch.diag_embed(alpha) + torch.diag_embed(beta[:, :-1], 1) + torch.diag_embed(beta[:, :-1], -1)
    values, ritz = torch.linalg.eigh(tridiagonal)
    order = values.abs().argsort(1, descending=True)[:, :k]
    values = values.gather(1, order)
    ritz = ritz.gather(2, order[:, None, :].expand(-1, steps, -1))
    residuals = norm[:, None] * ritz[:, -1].abs()  # norm: the last step's residual vector, before a beta
    return values, torch.einsum("bjd,bjk->bkd", basis, ritz), residuals


@dataclass
class PrincipalCurvatures:
    """The top-k principal curvatures of the boundary at each image's boundary point.

    curvatures: (B, k), |κ| descending (nan for images not valid); directions: (B, k, C, H, W) orthonormal per
    image, tangent to the boundary (nan where not valid); gradient_norm: (B,) ‖∇F(z)‖; boundary: the points;
    method, h: the Hessian-vector product used; steps: Lanczos steps; residuals: (B, k) Lanczos' residual norm
    of each curvature (see `lanczos`; nan where not valid).
    """

    curvatures: torch.Tensor
    directions: torch.Tensor
    gradient_norm: torch.Tensor
    boundary: BoundaryPoints
    method: str
    h: float
    steps: int
    residuals: torch.Tensor

    def converged(self, tol: float = 0.01) -> torch.Tensor:
        """(B, k) bool: the curvatures whose residual is at most tol × the image's largest |κ| (each is then within
        that of a true curvature of the operator; unconverged Ritz values after few steps depend on rounding)."""
        return self.residuals <= tol * self.curvatures.abs().amax(1, keepdim=True)

    def sorted_profile(self) -> torch.Tensor:
        """(k,) the mean over valid images of the curvatures sorted by value, descending (the paper's profile)."""
        valid = self.boundary.valid
        return self.curvatures[valid].sort(1, descending=True).values.mean(0)


def check_k(k: int, dim: int) -> None:
    """k principal directions must fit in the tangent plane of a D-dimensional input (1 <= k <= D - 1)."""
    if not 1 <= k <= dim - 1:
        raise UserInputError(f"k must be in [1, {dim - 1}] (the tangent plane of a {dim}-dimensional input), got {k}")


def principal_curvatures(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 20,
                         method: HessianMethod = "finite", h: float = 0.05, steps: int | None = None, seed: int = 0,
                         boundary: BoundaryPoints | None = None, progress: bool = False) -> PrincipalCurvatures:
    """Top-k principal curvatures (|κ| largest) of the boundary near x: (B, C, H, W) in [0, 1], labels y: (B,).

    boundary: precomputed `boundary_points(model, x, y)` (else computed here with its defaults). steps: Lanczos
    steps (default min(2k + 20, D - 1)). Image b's start vector is drawn from a generator seeded with seed + b
    (a batch gives each image what a call on that image alone with seed + b gives). Images misclassified or
    without a boundary point get nan rows (see `boundary.valid`).
    """
    check_images(x)
    check_labels(y, len(x))
    dim = x[0].numel()
    check_k(k, dim)
    steps = min(2 * k + 20, dim - 1) if steps is None else steps
    if not k <= steps <= dim - 1:
        raise UserInputError(f"Lanczos steps must be in [k={k}, {dim - 1}], got {steps}")
    if boundary is None:
        boundary = boundary_points(model, x, y)
    valid = boundary.valid
    curvatures = torch.full((len(x), k), math.nan, device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))
    directions = torch.full((len(x), k, *x.shape[1:]), math.nan, device=x.device, dtype=x.dtype)
    gradient_norm = torch.full((len(x),), math.nan, device=x.device)
    residuals = torch.full_like(curvatures, math.nan)
    rows = valid.nonzero().squeeze(1)
    if len(rows):
        with frozen_eval(model):
            operator = BoundaryHessian(model, boundary.z[rows], boundary.y[rows], boundary.adv[rows], method, h)
            start = torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(seed + int(b)))
                                 for b in rows]).to(device=x.device, dtype=x.dtype)
            values, vectors, residual = lanczos(lambda v: operator(v).detach(), start, steps, k, operator.project,
                                                progress)
        curvatures[rows] = values.to(curvatures.dtype)
        residuals[rows] = residual.to(residuals.dtype)
        directions[rows] = vectors.view(len(rows), k, *x.shape[1:]).to(x.dtype)
        gradient_norm[rows] = operator.gradient_norm.float()
    return PrincipalCurvatures(curvatures, directions, gradient_norm, boundary, method, h, steps, residuals)


def subspace_deepfool_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, basis: torch.Tensor | None = None,
                            steps: int = 50, candidates: int = 10, overshoot: float = 0.02) -> torch.Tensor:
    """The L2 norm L2-DeepFool needs when every step is restricted to a subspace: the linearised step to the
    closest candidate boundary with each logit-difference gradient projected on span(basis).

    basis: (B, d, D) orthonormal rows per image (None: the full space, DeepFool's own steps). Pixels are not
    clipped to [0, 1] (a geometric measure: clipping would leave the subspace). Returns (B,) norms, inf where
    the image was not fooled within `steps` (and 0 where it is misclassified already).
    """
    check_positive(steps=steps)
    with attacking(model, x, y) as (x, y):
        shape = x.shape
        r_total = torch.zeros(len(x), x[0].numel(), device=x.device, dtype=x.dtype)
        norms = torch.full((len(x),), math.inf, device=x.device)
        active = torch.arange(len(x), device=x.device)
        classes = None

        def restrict(g: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            if basis is None:
                return g
            u = basis[rows].flatten(2).to(g.dtype)
            return torch.einsum("bk,bkd->bd", torch.einsum("bkd,bd->bk", u, g), u)

        for iteration in range(steps + 1):
            point = (x[active].flatten(1) + (1 + overshoot) * r_total[active]).view(-1, *shape[1:]).requires_grad_()
            logits = model(point).float()
            if classes is None:
                classes = logits.detach().argsort(1, descending=True)[:, : min(candidates, logits.shape[1])]
            fooled = logits.detach().argmax(1) != y[active]
            norms[active[fooled]] = ((1 + overshoot) * r_total[active[fooled]]).norm(dim=1).float()
            keep = ~fooled
            if not keep.any() or iteration == steps:
                break
            z = logits.gather(1, classes[active])
            diffs = z[:, 1:] - z[:, :1]
            best_dist = torch.full((len(active),), math.inf, device=x.device)
            best_grad = torch.zeros_like(r_total[active])
            for c in range(diffs.shape[1]):
                (grad,) = torch.autograd.grad(diffs[:, c].sum(), point, retain_graph=c < diffs.shape[1] - 1)
                grad = restrict(grad.flatten(1), active)
                dist = diffs[:, c].detach().abs() / (grad.norm(dim=1) + 1e-8)
                closer = dist < best_dist
                best_dist = torch.where(closer, dist, best_dist)
                best_grad = torch.where(closer[:, None], grad, best_grad)
            step = ((best_dist + 1e-4) / (best_grad.norm(dim=1) + 1e-8))[:, None] * best_grad
            active, step = active[keep], step[keep]
            r_total[active] += step
    return norms


def random_subspaces(batch: int, d: int, dim: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(batch, d, dim) orthonormal bases of uniformly random d-dimensional subspaces (QR of Gaussians), seeded."""
    gaussian = torch.randn(batch, dim, d, generator=torch.Generator().manual_seed(seed))
    return torch.linalg.qr(gaussian).Q.transpose(1, 2).contiguous().to(device)


@dataclass
class Vulnerability:
    """L2 norms a subspace-restricted DeepFool needs: dims (n,) subspace dimensions; curved, random (n, B) in
    the span of the top-d curved directions / a random d-subspace (inf: not fooled); full (B,) the full space.
    Only the valid images of the curvatures are attacked (B = their number)."""

    dims: list[int]
    curved: torch.Tensor
    random: torch.Tensor
    full: torch.Tensor

    def table(self) -> list[dict]:
        """One row per dimension: median norms, their ratio to the full space's, and success rates."""
        full = self.full.median().item()
        rows = []
        for i, d in enumerate(self.dims):
            curved, rand = self.curved[i].median().item(), self.random[i].median().item()
            rows.append({"dim": d, "curved_median": curved, "random_median": rand, "full_median": full,
                         "curved_ratio": curved / full, "random_ratio": rand / full,
                         "curved_success": torch.isfinite(self.curved[i]).float().mean().item(),
                         "random_success": torch.isfinite(self.random[i]).float().mean().item()})
        return rows


def vulnerability(model: nn.Module, curvatures: PrincipalCurvatures, dims: Sequence[int] = (1, 2, 5, 10, 20),
                  steps: int = 50, seed: int = 0, progress: bool = False) -> Vulnerability:
    """The paper's §4 test: is the classifier more vulnerable along the most curved directions? For each d in
    dims, the norm a DeepFool restricted to the top-d directions (by |κ|) needs from x, against a random
    d-subspace (seeded with seed + d) and the full space, on the valid images of `curvatures`."""
    k = curvatures.curvatures.shape[1]
    if not dims or any(not 1 <= d <= k for d in dims):
        raise UserInputError(f"subspace dimensions must be in [1, k={k}], got {list(dims)}")
    rows = curvatures.boundary.valid
    x, y, directions = curvatures.boundary.x[rows], curvatures.boundary.y[rows], curvatures.directions[rows]
    full = subspace_deepfool_norms(model, x, y, None, steps)
    curved, rand = [], []
    for d in tqdm(dims, desc="vulnerability", unit="dim", disable=not progress):
        curved.append(subspace_deepfool_norms(model, x, y, directions[:, :d], steps))
        basis = random_subspaces(len(x), d, x[0].numel(), seed + d, x.device).to(x.dtype)
        rand.append(subspace_deepfool_norms(model, x, y, basis, steps))
    return Vulnerability(list(dims), torch.stack(curved), torch.stack(rand), full)


@dataclass
class SharedDirections:
    """Overlap of the top-k curved subspaces of pairs of images: overlap (B, B), ‖U_i U_jᵀ‖_F² / k in [0, 1]
    (1 on the diagonal); mean: its mean over pairs i ≠ j; random: k / D, a random pair's expected overlap."""

    overlap: torch.Tensor
    mean: float
    random: float


def shared_directions(curvatures: PrincipalCurvatures) -> SharedDirections:
    """How much the valid images' top curved subspaces coincide (paper §4: they are shared across images)."""
    u = curvatures.directions[curvatures.boundary.valid].flatten(2).float()
    if len(u) < 2:
        raise UserInputError(f"shared directions need at least 2 images with a boundary point, got {len(u)}")
    k, dim = u.shape[1], u.shape[2]
    overlap = torch.einsum("ikd,jld->ijkl", u, u).pow(2).sum((2, 3)) / k
    off = ~torch.eye(len(u), dtype=torch.bool, device=u.device)
    return SharedDirections(overlap, overlap[off].mean().item(), k / dim)


@dataclass
class Connectivity:
    """Paths between pairs of same-class images. pairs: (P, 2) indices into the images; connected: (P,) bool,
    a path staying in the class region was found; straight: (P,) bool, the straight segment already stays;
    length: (P,) path length / ‖x_a - x_b‖₂ (nan where not connected); points: (P,) vertices of the path."""

    pairs: torch.Tensor
    connected: torch.Tensor
    straight: torch.Tensor
    length: torch.Tensor
    points: torch.Tensor
    paths: list[torch.Tensor] = field(repr=False, default_factory=list)


def _push_into(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, step_size: float) -> torch.Tensor:
    """Normalised-gradient ascent on the margin of y from x (B, C, H, W) until each image is classified y
    with margin > 0 (or `steps` run out); pixels stay in [0, 1]."""
    x = x.clone()
    for _ in range(steps):
        point = x.clone().requires_grad_()
        m = margin(model(point), y)
        if bool((m > 0).all()):
            break
        (grad,) = torch.autograd.grad(m.sum(), point)
        direction = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x = torch.where((m > 0).view(-1, 1, 1, 1), x, (x + step_size * direction).clamp(0, 1))
    return x.detach()


def connect(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pairs: torch.Tensor, samples: int = 16,
            max_points: int = 32, push_steps: int = 50, step_size: float = 0.05,
            progress: bool = False) -> Connectivity:
    """The paper's iterative path search between x[a] and x[b] of the same class y[a] = y[b] (both classified
    correctly), pairs: (P, 2) int64. Start with the segment; every segment is checked at `samples` evenly spaced
    points; a segment with a point outside the class region gets its midpoint pushed into the region
    (`_push_into`: normalised-gradient steps of `step_size` on the margin) and is split there; repeat until every
    segment stays in the region (connected) or the path has `max_points` vertices."""
    check_images(x)
    check_labels(y, len(x))
    check_positive(samples=samples, max_points=max_points, push_steps=push_steps, step_size=step_size)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or bool((y[pairs[:, 0]] != y[pairs[:, 1]]).any()):
        raise UserInputError("connect needs pairs (P, 2) of images of one class each")
    t = torch.linspace(0, 1, samples + 2, device=x.device)[1:-1].view(-1, 1, 1, 1)
    connected, straight, length, points, paths = [], [], [], [], []
    with frozen_eval(model):
        with torch.no_grad():
            correct = model(x).argmax(1) == y
        if not bool(correct[pairs].all()):
            raise UserInputError("connect needs correctly classified images at both ends of every pair")
        for a, b in tqdm(pairs.tolist(), desc="paths", unit="pair", disable=not progress):
            label = y[a]
            path, done, first = [x[a], x[b]], False, True
            while True:
                starts, ends = torch.stack(path[:-1]), torch.stack(path[1:])
                probe = starts[None] + t[:, None] * (ends - starts)[None]  # (samples, segments, C, H, W)
                with torch.no_grad():
                    inside = (model(probe.flatten(0, 1)).argmax(1) == label).view(samples, -1).all(0)
                if first:
                    straight.append(bool(inside.all()))
                    first = False
                if bool(inside.all()):
                    done = True
                    break
                broken = (~inside).nonzero().squeeze(1).tolist()
                if len(path) + len(broken) > max_points:
                    break
                middles = _push_into(model, (starts[broken] + ends[broken]) / 2, label.repeat(len(broken)),
                                     push_steps, step_size)
                for i, segment in enumerate(reversed(broken)):
                    path.insert(segment + 1, middles[len(broken) - 1 - i])
            vertices = torch.stack(path)
            connected.append(done)
            total = (vertices[1:] - vertices[:-1]).flatten(1).norm(dim=1).sum()
            length.append((total / (x[a] - x[b]).norm()).item() if done else math.nan)
            points.append(len(path))
            paths.append(vertices.cpu())
    return Connectivity(pairs, torch.tensor(connected), torch.tensor(straight), torch.tensor(length),
                        torch.tensor(points), paths)


def same_class_pairs(y: torch.Tensor, correct: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Up to n distinct pairs (P, 2) of correctly classified images of one class, drawn with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    good = correct.nonzero().squeeze(1).cpu()
    labels = y.cpu()[good]
    candidates = [(int(good[i]), int(good[j])) for i in range(len(good)) for j in range(i + 1, len(good))
                  if labels[i] == labels[j]]
    if not candidates:
        raise UserInputError("no two correctly classified images share a class: draw more images")
    order = torch.randperm(len(candidates), generator=generator)[:n]
    return torch.tensor([candidates[i] for i in order.tolist()], dtype=torch.long, device=y.device)


@dataclass
class CurvatureStatistic:
    """The detector's statistic (paper §5, Algorithm 1). rho: (B, K) the mean second difference of
    F_i = f_i - f_k̂ along random unit directions, (F_i(x + h v) + F_i(x - h v) - 2 F_i(x)) / h² (a trace
    estimate of ∇²F_i / D), -inf at i = k̂; score: (B,) max_i rho_i; recovered: (B,) argmax_i rho_i;
    predicted: (B,) k̂, the model's label."""

    rho: torch.Tensor
    score: torch.Tensor
    recovered: torch.Tensor
    predicted: torch.Tensor


def curvature_statistic(model: nn.Module, x: torch.Tensor, directions: int = 20, h: float = 0.5,
                        seed: int = 0) -> CurvatureStatistic:
    """Algorithm 1's ρ for x: (B, C, H, W) in [0, 1], from 2·directions + 1 forward passes per image; the
    directions are Gaussian, normalised to unit L2 norm, drawn with `seed` (the same for every image)."""
    check_images(x)
    check_positive(directions=directions)
    if not h > 0:
        raise UserInputError(f"the finite-difference step h must be > 0, got {h}")
    v = torch.randn(directions, *x.shape[1:], generator=torch.Generator().manual_seed(seed))
    v = (v / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).to(device=x.device, dtype=x.dtype)
    with frozen_eval(model), torch.no_grad():
        logits = model(x).float()
        predicted = logits.argmax(1)
        f = logits - logits.gather(1, predicted[:, None])
        rho = torch.zeros_like(f)
        for j in range(directions):
            both = model(torch.cat([x + h * v[j], x - h * v[j]])).float()
            shifted = both - both.gather(1, torch.cat([predicted, predicted])[:, None])
            plus, minus = shifted.chunk(2)
            rho += (plus + minus - 2 * f) / h**2
        rho = (rho / directions).scatter(1, predicted[:, None], -math.inf)
    score, recovered = rho.max(1)
    return CurvatureStatistic(rho, score, recovered, predicted)


def roc_auc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be larger on positives: P(s⁺ > s⁻) + P(s⁺ = s⁻) / 2
    (Mann-Whitney), over all pairs. negatives (n,), positives (m,), both nonempty."""
    if not len(negatives) or not len(positives):
        raise UserInputError("the ROC AUC needs at least one clean and one perturbed score")
    difference = positives.float()[:, None] - negatives.float()[None, :]
    return ((difference > 0).float().mean() + (difference == 0).float().mean() / 2).item()


@dataclass
class DetectorResult:
    """The curvature detector on clean images and on each attack's adversarials. fpr: the false-positive rate the
    threshold is set at on the clean scores; threshold: that (1 - fpr) quantile; clean: the clean images'
    statistic; adversarial: attack name -> the statistic of its successful adversarials; labels: attack name ->
    (n,) true labels of those; rows: per attack, auc, tpr (detected share at the threshold), recovery (share of
    detected adversarials whose recovered label is the true one), success (the attack's success rate)."""

    fpr: float
    threshold: float
    clean: CurvatureStatistic
    adversarial: dict[str, CurvatureStatistic]
    labels: dict[str, torch.Tensor]
    rows: list[dict]


def evaluate_detector(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Mapping[str, Attack],
                      fpr: float = 0.05, directions: int = 20, h: float = 0.5, seed: int = 0,
                      progress: bool = False) -> DetectorResult:
    """Threshold the statistic at `fpr` on the correctly classified clean images of x: (B, C, H, W) in [0, 1]
    (labels y: (B,)), then score each attack's successful adversarials of those images: ROC AUC clean vs
    perturbed, detection rate at the threshold and the recovered label's accuracy."""
    if not 0 < fpr < 1:
        raise UserInputError(f"fpr must be in (0, 1), got {fpr}")
    if not attacks:
        raise UserInputError("evaluate_detector needs at least one attack")
    check_images(x)
    check_labels(y, len(x))
    with frozen_eval(model), torch.no_grad():
        correct = model(x).argmax(1) == y
    if not bool(correct.any()):
        raise UserInputError("the model misclassifies every image: no clean scores to set the threshold on")
    x, y = x[correct], y[correct]
    clean = curvature_statistic(model, x, directions, h, seed)
    threshold = torch.quantile(clean.score, 1 - fpr, interpolation="higher").item()  # at most fpr above it
    adversarial, labels, rows = {}, {}, []
    for name, attack in tqdm(attacks.items(), desc="detector", unit="attack", disable=not progress):
        with seeded_rng(x.device, seed):
            x_adv = attack(model, x, y)
        with frozen_eval(model), torch.no_grad():
            fooled = model(x_adv).argmax(1) != y
        row = {"attack": name, "success": fooled.float().mean().item(), "n": int(fooled.sum()),
               "median_l2": (x_adv - x).flatten(1).norm(dim=1)[fooled].median().item() if fooled.any() else math.nan}
        if fooled.any():
            stat = curvature_statistic(model, x_adv[fooled], directions, h, seed)
            detected = stat.score > threshold
            row |= {"auc": roc_auc(clean.score, stat.score), "tpr": detected.float().mean().item(),
                    "recovery": (stat.recovered[detected] == y[fooled][detected]).float().mean().item()
                    if detected.any() else math.nan}
            adversarial[name], labels[name] = stat, y[fooled]
        else:
            row |= {"auc": math.nan, "tpr": math.nan, "recovery": math.nan}
        rows.append(row)
    return DetectorResult(fpr, threshold, clean, adversarial, labels, rows)
