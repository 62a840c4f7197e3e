"""Essential and adversarial frequency maps, solved for thousands of images at once (docs/method.md §1).

For each image x with target t (its true label for an essential map; for an adversarial map, the adversarial
label of an attacked image) the map M in [0, 1]^(C, H, W) minimises

    CE(f(Re F^-1(M * F(x))), t) + lam * sum |M|        (sum over all C*H*W entries)

from M = 1 with Adam (lr 0.01), M clamped to [0, 1] after every step. An image stops after more than
`min_steps` steps once |loss_t - mean(last `window` losses, loss_t included)| < tol, or at `max_steps`.
Its map is kept only if the masked image is still classified as t at the stop.

Batching is exact: the summed per-image loss gives each M_i its single-image gradient and Adam is elementwise,
so every image carries its own Adam moments and step count (per-image bias correction) and follows the path it
would follow alone. A fixed-size working batch is refilled from the queue of waiting images as others stop,
and stopped images leave it, so the cost follows the sum of per-image steps, not batch size x slowest image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from freqmaps.errors import UserInputError
from freqmaps.fourier import apply_mask, fftshift2, ifftshift2
from freqmaps.inputs import check_images, check_labels, frozen_eval

Kind = Literal["essential", "adversarial"]


@dataclass(frozen=True)
class MapSettings:
    """The solver's knobs; the defaults are the paper's for 32x32 images (it used lam=0.1 at 224x224).

    lam: weight of sum |M|. lr, betas, eps: Adam. min_steps, max_steps, tol, window: the stopping rule.
    batch_size: images optimised together (the working batch; a memory / speed knob, not a result knob).
    """

    lam: float = 0.5
    lr: float = 0.01
    min_steps: int = 500
    max_steps: int = 5000
    tol: float = 1e-5
    window: int = 20
    batch_size: int = 256
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        checks = (
            ("lam", self.lam >= 0, ">= 0"), ("lr", self.lr > 0, "> 0"),
            ("min_steps", 0 <= self.min_steps <= self.max_steps, "in [0, max_steps]"),
            ("max_steps", self.max_steps >= 1, ">= 1"), ("tol", self.tol >= 0, ">= 0"),
            ("window", self.window >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("betas", all(0 <= b < 1 for b in self.betas), "in [0, 1)"), ("eps", self.eps > 0, "> 0"),
        )
        problems = [f"{name} must be {need}, got {getattr(self, name)}" for name, ok, need in checks if not ok]
        if problems:
            raise UserInputError("invalid map settings: " + "; ".join(problems))


def resolve_settings(settings: MapSettings | None, overrides: dict, default: MapSettings) -> MapSettings:
    """`settings` (or `default`) with keyword overrides applied; unknown names raise UserInputError."""
    known = {f.name for f in fields(MapSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserInputError(f"unknown map setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(settings or default, **overrides)


@dataclass
class FrequencyMaps:
    """Solved maps and what produced them; row i belongs to image `index[i]`.

    kind: "essential" or "adversarial". maps: (n, C, H, W) in [0, 1], fftshift-ed over (H, W), the input's
    dtype. index: (n,) image ids. labels: (n,) true labels. adversarial_labels: (n,) the class an adversarial
    map preserves (-1 for essential maps). steps: (n,) Adam steps taken. converged: (n,) bool, stopped by the
    tolerance rule (not by max_steps). kept: (n,) bool, the masked image is still classified as its target.
    settings: the MapSettings used, as a dict.
    """

    kind: str
    maps: torch.Tensor
    index: torch.Tensor
    labels: torch.Tensor
    adversarial_labels: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    kept: torch.Tensor
    settings: dict = field(default_factory=dict)

    _TENSORS = ("maps", "index", "labels", "adversarial_labels", "steps", "converged", "kept")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def targets(self) -> torch.Tensor:
        """(n,) the class each map preserves: the true label (essential) or the adversarial label."""
        return self.labels if self.kind == "essential" else self.adversarial_labels

    def select(self, rows: torch.Tensor) -> FrequencyMaps:
        """A new result with only `rows` (a bool mask or integer positions)."""
        return FrequencyMaps(self.kind, *(getattr(self, name)[rows] for name in self._TENSORS), dict(self.settings))

    def kept_only(self) -> FrequencyMaps:
        return self.select(self.kept)

    def class_means(self, num_classes: int) -> torch.Tensor:
        """(num_classes, C, H, W) float32 mean of the kept maps per target class (zeros for a class with none)."""
        kept = self.kept_only()
        sums = torch.zeros(num_classes, *self.maps.shape[1:]).index_add_(0, kept.targets, kept.maps.float())
        counts = torch.bincount(kept.targets, minlength=num_classes).clamp_min(1).float()
        return sums / counts.view(-1, 1, 1, 1)

    def save(self, path: str | Path) -> None:
        """One file of tensors and plain values, loadable with `torch.load(..., weights_only=True)`."""
        tensors = {name: getattr(self, name).detach().cpu() for name in self._TENSORS}
        torch.save({"kind": self.kind, "settings": dict(self.settings), **tensors}, path)

    @classmethod
    def load(cls, path: str | Path) -> FrequencyMaps:
        """Read a file written by `save` (safe loading: no arbitrary pickle is executed)."""
        data = torch.load(path, map_location="cpu", weights_only=True)
        missing = [name for name in ("kind", "settings", *cls._TENSORS) if name not in data]
        if missing:
            raise UserInputError(f"{path} is not a saved FrequencyMaps file (missing {', '.join(missing)})")
        return cls(data["kind"], *(data[name] for name in cls._TENSORS), data["settings"])


@dataclass
class _Batch:
    """Solver state of the k images in the working batch; every field has k rows."""

    rows: torch.Tensor  # (k,) positions in the input
    spectrum: torch.Tensor  # (k, C, H, W) complex, F(x)
    target: torch.Tensor  # (k,)
    mask: torch.Tensor  # (k, C, H, W), unshifted layout
    m: torch.Tensor  # Adam first moment, like mask
    v: torch.Tensor  # Adam second moment, like mask
    t: torch.Tensor  # (k,) steps taken
    history: torch.Tensor  # (k, window) last losses, ring buffer indexed by (t - 1) % window

    def take(self, keep: torch.Tensor) -> _Batch:
        return _Batch(*(getattr(self, f.name)[keep] for f in fields(self)))

    def join(self, other: _Batch) -> _Batch:
        return _Batch(*(torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def __len__(self) -> int:
        return len(self.rows)


def solve_maps(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: Kind = "essential",
    labels: torch.Tensor | None = None,
    settings: MapSettings | None = None,
    init: torch.Tensor | None = None,
    index: torch.Tensor | None = None,
    progress: bool = True,
) -> FrequencyMaps:
    """One frequency map per image, batched exactly (see the module docstring).

    x: (n, C, H, W) float in [0, 1], on the model's device; target: (n,) int64, the class each map must keep;
    labels: (n,) int64 true labels (default: target); init: optional (n, C, H, W) fftshift-ed maps in [0, 1]
    to start from instead of ones (warm start); index: (n,) int64 image ids stored with the maps (default
    0..n-1). The model runs in eval mode with frozen parameters and is handed back in the mode it came in.
    progress: a tqdm bar of images stopped / n.
    """
    if kind not in ("essential", "adversarial"):
        raise UserInputError(f"kind must be 'essential' or 'adversarial', got {kind!r}")
    s = settings or MapSettings()
    check_images(x)
    n = len(x)
    check_labels(target, n, "target")
    labels = target if labels is None else labels
    check_labels(labels, n, "labels")
    index = torch.arange(n) if index is None else index
    check_labels(index, n, "index")
    if init is not None:
        if not isinstance(init, torch.Tensor) or init.shape != x.shape:
            got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
            raise UserInputError(f"init must be maps shaped like the images {tuple(x.shape)}, got {got}")
        check_images(init, "init")

    out_maps = torch.empty_like(x)
    out_steps = torch.zeros(n, dtype=torch.long)
    out_converged = torch.zeros(n, dtype=torch.bool)
    out_kept = torch.zeros(n, dtype=torch.bool)
    with frozen_eval(model), tqdm(total=n, desc=f"{kind} maps", unit="map", disable=not progress) as bar:
        x = x.detach().clone()
        target = target.detach().clone().to(device=x.device, dtype=torch.long)
        init = None if init is None else ifftshift2(init.detach().to(x).clamp(0, 1))
        batch, queued = _start(x, target, init, 0, 0, s), 0
        while queued < n or len(batch):
            if queued < n and len(batch) < s.batch_size:
                fresh = _start(x, target, init, queued, min(n, queued + s.batch_size - len(batch)), s)
                batch, queued = batch.join(fresh), queued + len(fresh)
            converged = _adam_step(model, batch, s)
            done = converged | (batch.t >= s.max_steps)
            if done.any():
                finished = batch.take(done)
                with torch.no_grad():
                    predicted = model(apply_mask(None, finished.mask, finished.spectrum)).argmax(1)
                rows = finished.rows.cpu()
                out_maps[finished.rows] = finished.mask
                out_steps[rows] = finished.t.cpu()
                out_converged[rows] = converged[done].cpu()
                out_kept[rows] = (predicted == finished.target).cpu()
                batch = batch.take(~done)
                bar.update(len(rows))
                bar.set_postfix(kept=int(out_kept.sum()))

    adversarial = target.cpu() if kind == "adversarial" else torch.full((n,), -1, dtype=torch.long)
    return FrequencyMaps(
        kind, fftshift2(out_maps).cpu(), index.detach().cpu(), labels.detach().cpu().long(), adversarial,
        out_steps, out_converged, out_kept, asdict(s),
    )


def _start(x: torch.Tensor, target: torch.Tensor, init: torch.Tensor | None, first: int, stop: int,
           s: MapSettings) -> _Batch:
    """Fresh solver state for the queued images first..stop-1 (masks at ones or at the warm start)."""
    rows = torch.arange(first, stop, device=x.device)
    mask = torch.ones_like(x[rows]) if init is None else init[rows].clone()
    spectrum = torch.fft.fft2(x[rows]) if len(rows) else x[rows] * 1j  # (MKL's FFT rejects an empty batch)
    return _Batch(
        rows=rows, spectrum=spectrum, target=target[rows], mask=mask, m=torch.zeros_like(mask),
        v=torch.zeros_like(mask), t=torch.zeros(len(rows), dtype=torch.long, device=x.device),
        history=torch.zeros(len(rows), s.window, dtype=x.dtype, device=x.device),
    )


def _adam_step(model: nn.Module, batch: _Batch, s: MapSettings) -> torch.Tensor:
    """One Adam step on every mask of the working batch; returns the (k,) converged flags of the stopping
    rule, judged on the losses before the step."""
    mask = batch.mask.requires_grad_(True)
    logits = model(apply_mask(None, mask, batch.spectrum))
    loss = F.cross_entropy(logits, batch.target, reduction="none") + s.lam * mask.abs().flatten(1).sum(1)
    (grad,) = torch.autograd.grad(loss.sum(), mask)
    with torch.no_grad():
        batch.t = batch.t + 1
        batch.mask, batch.m, batch.v = adam_update(mask.detach(), grad, batch.m, batch.v, batch.t, s)
        return record_loss(batch.history, loss.detach(), batch.t, s)


def adam_update(p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: torch.Tensor,
                s: MapSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.optim.Adam's update (no weight decay) of k independent parameters p: (k, ...) with their own step
    counts t: (k,) (this step included, so bias correction is per row), then the clamp to [0, 1].
    Returns the new (p, m, v)."""
    b1, b2 = s.betas
    m = torch.lerp(m, grad, 1 - b1)
    v = torch.addcmul(v * b2, grad, grad, value=1 - b2)
    t = t.to(p.dtype).view(-1, *([1] * (p.dim() - 1)))
    denom = (v.sqrt() / (1 - b2 ** t).sqrt()).add_(s.eps)
    return (p - (s.lr / (1 - b1 ** t)) * (m / denom)).clamp_(0, 1), m, v


def record_loss(history: torch.Tensor, loss: torch.Tensor, t: torch.Tensor, s: MapSettings) -> torch.Tensor:
    """Write loss (k,) into the ring buffers history (k, window) at step t (k,) (this step included) and
    return the (k,) flags t > min_steps and |loss - mean of the last min(t, window) losses| < tol."""
    history[torch.arange(len(t), device=t.device), (t - 1) % s.window] = loss
    recent = history.sum(1) / t.clamp(1, s.window)
    return (t > s.min_steps) & ((loss - recent).abs() < s.tol)


def essential_maps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MapSettings | None = None, *,
    init: torch.Tensor | None = None, index: torch.Tensor | None = None, progress: bool = True, **overrides,
) -> FrequencyMaps:
    """Essential maps of correctly classified clean images: the sparsest maps that keep the true label.

    x: (n, C, H, W) in [0, 1]; y: (n,) int64 true labels. Any MapSettings field may be given as a keyword
    (e.g. lam=0.1) to override `settings`; init, index, progress as in `solve_maps`.
    """
    s = resolve_settings(settings, overrides, MapSettings())
    return solve_maps(model, x, y, kind="essential", settings=s, init=init, index=index, progress=progress)


def adversarial_maps(
    model: nn.Module, x_adv: torch.Tensor, y_adv: torch.Tensor, y: torch.Tensor | None = None,
    settings: MapSettings | None = None, *, init: torch.Tensor | None = None, index: torch.Tensor | None = None,
    progress: bool = True, **overrides,
) -> FrequencyMaps:
    """Adversarial maps of successfully attacked images: the sparsest maps that keep the adversarial label.

    x_adv: (n, C, H, W) in [0, 1]; y_adv: (n,) int64 adversarial labels (argmax f(x_adv)); y: (n,) the true
    labels, stored with the maps (default: y_adv). Keywords as `essential_maps`.
    """
    s = resolve_settings(settings, overrides, MapSettings())
    return solve_maps(model, x_adv, y_adv, kind="adversarial", labels=y, settings=s, init=init, index=index,
                      progress=progress)
