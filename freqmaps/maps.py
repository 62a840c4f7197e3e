"""Essential and adversarial frequency maps, solved for thousands of images at once (docs/method.md §1).

For each image x with target t (its true label for an essential map; for an adversarial map, the adversarial
label of an attacked image) the map M in [0, 1]^(C, H, W) minimises

    CE(f(Re F^-1(M * F(x))), t) + lam * sum |M|        (sum over all C*H*W entries)

from M = 1 with Adam (lr 0.01), M clamped to [0, 1] after every step. An image stops after more than
`min_steps` steps once |loss_t - mean(last `window` losses, loss_t included)| < tol, or at `max_steps`.
Its map is kept only if the masked image is still classified as t at the stop. This is the paper's rule
(`solver="paper"`, the default).

The fast rule (`solver="fast"`) solves the same problem along the same path in fewer steps. Adam with step lr
and decay rates b1, b2 is a discretisation of one continuous trajectory; a step of lr*k with decay rates b1^k,
b2^k (bias correction then runs in paper time k*t) follows that trajectory k paper steps at a time
(k = `time_scale`). The paper rule's maps also settle long before its loss rule lets them stop (on a CIFAR-10
ResNet-20 the map is final by step ~250 of ~600), so an image stops on its map instead: every `change_window`
steps, once past `fast_min_steps`, when |M_t - M_(t-change_window)|_1 / max(|M_t|_1, 1) < `change_tol`, or at
`fast_max_steps`. README "Two solvers" gives the measured agreement with the paper rule.

Batching is exact: the summed per-image loss gives each M_i its single-image gradient and Adam is elementwise,
so every image carries its own Adam moments and step count (per-image bias correction) and follows the path it
would follow alone. A fixed-size working batch is refilled from the queue of waiting images as others stop,
and stopped images leave it, so the cost follows the sum of per-image steps, not batch size x slowest image.

Warm start (`previous`): an image whose map was solved before for the same target (same image index, same kind)
starts from that map under the warm rule: it may stop after more than `warm_min_steps` steps (the rest of the
stopping rule as above) and takes at most `min_steps` steps. A map not converged by then goes on from where it
got under the full rule, with fresh Adam moments and a fresh loss window, and its steps add up.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import accumulate
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from freqmaps.errors import UserInputError
from freqmaps.fourier import apply_mask, fftshift2, ifftshift2
from freqmaps.inputs import check_images, check_labels, check_model_fits, frozen_eval
from freqmaps.memory import out_of_memory, working_batch

Kind = Literal["essential", "adversarial"]
Solver = Literal["paper", "fast"]


@dataclass(frozen=True)
class MapSettings:
    """The solver's knobs; the defaults are the paper's for 32x32 images (it used lam=0.1 at 224x224).

    lam: weight of sum |M|. lr, betas, eps: Adam. min_steps, max_steps, tol, window: the stopping rule.
    batch_size: images optimised together (the working batch; a memory / speed knob, not a result knob).
    memory_gib: a memory budget for the working batch (`freqmaps.memory`): the batch is then the largest that
    fits, at most batch_size; None: batch_size as given. Running out of memory names both knobs.
    solver: "paper" (the paper's rule, bit for bit) or "fast" (module docstring): time_scale, the paper steps
    one fast step covers; fast_min_steps, fast_max_steps, change_window, change_tol: its stop on the map's
    change. autocast: run the model in bfloat16 autocast (about 2x faster on CPUs with AMX and on GPUs; the
    maps move a little, README "Two solvers").
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
    solver: Solver = "paper"
    time_scale: float = 1.75
    fast_min_steps: int = 85
    fast_max_steps: int = 500
    change_window: int = 5
    change_tol: float = 0.03
    autocast: bool = False
    memory_gib: float | None = None

    def __post_init__(self) -> None:
        checks = (
            ("lam", self.lam >= 0, ">= 0"), ("lr", self.lr > 0, "> 0"),
            ("min_steps", 0 <= self.min_steps <= self.max_steps, "in [0, max_steps]"),
            ("max_steps", self.max_steps >= 1, ">= 1"), ("tol", self.tol >= 0, ">= 0"),
            ("window", self.window >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("betas", all(0 <= b < 1 for b in self.betas), "in [0, 1)"), ("eps", self.eps > 0, "> 0"),
            ("solver", self.solver in ("paper", "fast"), "'paper' or 'fast'"),
            ("time_scale", self.time_scale >= 1, ">= 1"),
            ("fast_min_steps", 0 <= self.fast_min_steps <= self.fast_max_steps, "in [0, fast_max_steps]"),
            ("fast_max_steps", self.fast_max_steps >= 1, ">= 1"),
            ("change_window", self.change_window >= 1, ">= 1"), ("change_tol", self.change_tol >= 0, ">= 0"),
            ("memory_gib", self.memory_gib is None or self.memory_gib > 0, "> 0 or null"),
        )
        problems = [f"{name} must be {need}, got {getattr(self, name)}" for name, ok, need in checks if not ok]
        if problems:
            raise UserInputError("invalid map settings: " + "; ".join(problems))

    @property
    def fast(self) -> bool:
        return self.solver == "fast"

    @property
    def first_stop(self) -> int:
        """Steps an image takes before its rule may stop it: min_steps (paper) or fast_min_steps (fast)."""
        return self.fast_min_steps if self.fast else self.min_steps

    @property
    def last_step(self) -> int:
        """The step an image stops at if its rule has not stopped it: max_steps or fast_max_steps."""
        return self.fast_max_steps if self.fast else self.max_steps

    def adam_constants(self) -> tuple[float, float, float]:
        """(lr, b1, b2) of one step: the paper's, or k = time_scale paper steps at once (lr*k, b1^k, b2^k)."""
        b1, b2 = self.betas
        if not self.fast:
            return self.lr, b1, b2
        k = self.time_scale
        return self.lr * k, b1 ** k, b2 ** k

    def capped(self, steps: int) -> MapSettings:
        """These settings with every image stopped after exactly `steps` steps (either rule; smoke runs)."""
        return replace(self, min_steps=0, max_steps=steps, fast_min_steps=0, fast_max_steps=steps)

    def warm_rule(self, warm_min_steps: int) -> MapSettings:
        """The rule of a warm-started map: it may stop after min(warm_min_steps, first_stop) steps and takes
        at most first_stop."""
        first, cap = min(warm_min_steps, self.first_stop), max(self.first_stop, 1)
        if self.fast:
            return replace(self, fast_min_steps=first, fast_max_steps=cap)
        return replace(self, min_steps=first, max_steps=cap)


def resolve_settings(settings: MapSettings | None, overrides: dict, default: MapSettings) -> MapSettings:
    """`settings` (or `default`) with keyword overrides applied; unknown names raise UserInputError."""
    known = {f.name for f in fields(MapSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserInputError(f"unknown map setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(settings or default, **overrides)


def speed_free(settings: MapSettings) -> dict:
    """The settings as a dict without `batch_size`, which decides speed only: what a fingerprint of the results
    holds (`freqmaps.chunks`)."""
    return {name: value for name, value in asdict(settings).items() if name != "batch_size"}


@dataclass
class FrequencyMaps:
    """Solved maps and what produced them; row i belongs to image `index[i]`.

    kind: "essential" or "adversarial". maps: (n, C, H, W) in [0, 1], fftshift-ed over (H, W), the input's
    dtype. index: (n,) image ids. labels: (n,) true labels. adversarial_labels: (n,) the class an adversarial
    map preserves (-1 for essential maps). steps: (n,) Adam steps taken. converged: (n,) bool, stopped by the
    tolerance rule (not by max_steps). kept: (n,) bool, the masked image is still classified as its target.
    warm: (n,) bool, warm-started from a previous map (see the module docstring). settings: the MapSettings
    used, as a dict.
    """

    kind: str
    maps: torch.Tensor
    index: torch.Tensor
    labels: torch.Tensor
    adversarial_labels: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    kept: torch.Tensor
    warm: torch.Tensor
    settings: dict = field(default_factory=dict)

    _TENSORS = ("maps", "index", "labels", "adversarial_labels", "steps", "converged", "kept", "warm")

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

    @classmethod
    def cat(cls, parts: Sequence[FrequencyMaps]) -> FrequencyMaps:
        """The rows of all `parts` (one kind, one image shape), in order; kind and settings of the first."""
        return cls(parts[0].kind, *(torch.cat([getattr(p, name) for p in parts]) for name in cls._TENSORS),
                   dict(parts[0].settings))

    def class_means(self, num_classes: int) -> torch.Tensor:
        """(num_classes, C, H, W) float32 mean of the kept maps per target class (zeros for a class with none)."""
        kept = self.kept_only()
        sums = torch.zeros(num_classes, *self.maps.shape[1:]).index_add_(0, kept.targets, kept.maps.float())
        counts = torch.bincount(kept.targets, minlength=num_classes).clamp_min(1).float()
        return sums / counts.view(-1, 1, 1, 1)

    def state(self) -> dict:
        """Tensors (on the CPU) and plain values only: what `save` writes, and what a checkpoint can carry."""
        tensors = {name: getattr(self, name).detach().cpu() for name in self._TENSORS}
        return {"kind": self.kind, "settings": dict(self.settings), **tensors}

    @classmethod
    def from_state(cls, data: dict, source: str = "the state") -> FrequencyMaps:
        """The inverse of `state`; `source` names where `data` came from in the error for a foreign dict."""
        missing = [name for name in ("kind", "settings", *cls._TENSORS) if name not in data]
        if missing:
            raise UserInputError(f"{source} is not a saved FrequencyMaps (missing {', '.join(missing)})")
        return cls(data["kind"], *(data[name] for name in cls._TENSORS), dict(data["settings"]))

    def save(self, path: str | Path) -> None:
        """One file of tensors and plain values, loadable with `torch.load(..., weights_only=True)`."""
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path) -> FrequencyMaps:
        """Read a file written by `save` (safe loading: no arbitrary pickle is executed)."""
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), str(path))


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
    history: torch.Tensor  # (k, window) last losses, ring buffer indexed by (t - 1) % window (paper rule)
    anchor: torch.Tensor  # fast rule: (k, C, H, W) the mask at the last multiple of change_window; paper: (k, 0)

    def take(self, keep: torch.Tensor) -> _Batch:
        return _Batch(*(getattr(self, f.name)[keep] for f in fields(self)))

    def join(self, other: _Batch) -> _Batch:
        return _Batch(*(torch.cat([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)))

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class MapProblem:
    """Images whose maps must keep a class: x (n, C, H, W) float in [0, 1] on the model's device; target (n,)
    int64, the class each map must keep; labels (n,) int64 true labels (default: target); index (n,) int64
    image ids stored with the maps and used to find previous maps (default 0..n-1); init: optional (n, C, H, W)
    fftshift-ed maps in [0, 1] to start from instead of ones (under the full rule)."""

    kind: Kind
    x: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None
    init: torch.Tensor | None = None

    def checked(self) -> MapProblem:
        """This problem with its inputs validated (UserInputError otherwise) and the defaults filled in."""
        if self.kind not in ("essential", "adversarial"):
            raise UserInputError(f"kind must be 'essential' or 'adversarial', got {self.kind!r}")
        check_images(self.x)
        n = len(self.x)
        check_labels(self.target, n, "target")
        labels = self.target if self.labels is None else self.labels
        check_labels(labels, n, "labels")
        index = torch.arange(n) if self.index is None else self.index
        check_labels(index, n, "index")
        if self.init is not None:
            if not isinstance(self.init, torch.Tensor) or self.init.shape != self.x.shape:
                got = tuple(self.init.shape) if isinstance(self.init, torch.Tensor) else type(self.init).__name__
                raise UserInputError(f"init must be maps shaped like the images {tuple(self.x.shape)}, got {got}")
            check_images(self.init, "init")
        return replace(self, labels=labels, index=index)


@dataclass
class _Solved:
    """Raw solver output for k images: maps (k, C, H, W) unshifted, on the images' device; steps (k,);
    converged, kept (k,) bool (CPU)."""

    maps: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    kept: torch.Tensor

    @classmethod
    def empty(cls, x: torch.Tensor) -> _Solved:
        k = len(x)
        return cls(torch.empty_like(x), torch.zeros(k, dtype=torch.long), torch.zeros(k, dtype=torch.bool),
                   torch.zeros(k, dtype=torch.bool))

    def take(self, rows: torch.Tensor) -> _Solved:
        """The rows `rows` (a CPU bool mask or positions)."""
        return _Solved(self.maps[rows.to(self.maps.device)], self.steps[rows], self.converged[rows], self.kept[rows])

    def put(self, rows: torch.Tensor, part: _Solved) -> None:
        """Write `part` into the rows `rows` (positions, on any device)."""
        self.maps[rows.to(self.maps.device)] = part.maps
        rows = rows.cpu()
        self.steps[rows], self.converged[rows], self.kept[rows] = part.steps, part.converged, part.kept


def solve_maps(
    model: nn.Module,
    problems: Sequence[MapProblem],
    settings: MapSettings | None = None,
    *,
    previous: Sequence[FrequencyMaps] = (),
    warm_min_steps: int = 50,
    progress: bool = True,
) -> list[FrequencyMaps]:
    """One frequency map per image of every problem, all problems batched together exactly (see the module
    docstring): one FrequencyMaps per problem, in order.

    previous: maps solved before, at most one FrequencyMaps per kind; an image of a problem warm-starts from the
    map of the same kind with the same index and target (`warm_min_steps`: the warm rule's minimum steps).
    Problems must share the image shape, dtype and device. The model runs in eval mode with frozen parameters
    and is handed back in the mode it came in. progress: a tqdm bar of maps stopped.
    """
    s = settings or MapSettings()
    if warm_min_steps < 0:
        raise UserInputError(f"warm_min_steps must be >= 0, got {warm_min_steps}")
    problems = [p.checked() for p in problems]
    if len({(p.x.shape[1:], p.x.dtype, p.x.device) for p in problems}) > 1:
        raise UserInputError("the problems solved together must share image shape, dtype and device")
    by_kind = {maps.kind: maps for maps in previous}
    if len(by_kind) < len(previous):
        raise UserInputError("give at most one previous FrequencyMaps per kind")
    bounds = list(accumulate((len(p.x) for p in problems), initial=0))
    parts = [slice(first, stop) for first, stop in zip(bounds, bounds[1:])]  # each problem's rows
    with frozen_eval(model):
        x = torch.cat([p.x.detach() for p in problems])
        target = torch.cat([p.target.detach().to(device=x.device, dtype=torch.long) for p in problems])
        if len(x):
            check_model_fits(model, x, target, "the images to solve")
        init = torch.cat([torch.ones_like(p.x) if p.init is None else p.init.detach().to(x).clamp(0, 1)
                          for p in problems])
        warm = torch.cat([_warm_starts(p, by_kind.get(p.kind), init[rows]) for p, rows in zip(problems, parts)])
        s = replace(s, batch_size=working_batch(model, x, s.batch_size, s.memory_gib, s.autocast))
        try:
            solved = _solve_warm_then_cold(model, x, target, ifftshift2(init), warm.to(x.device), s,
                                           warm_min_steps, progress)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            memory_error = out_of_memory(error, x, s.batch_size)
            if memory_error is None:
                raise
            raise memory_error from None
    results = []
    for p, rows in zip(problems, parts):
        adversarial = p.target.cpu().long() if p.kind == "adversarial" else torch.full((len(p.x),), -1)
        results.append(FrequencyMaps(
            p.kind, fftshift2(solved.maps[rows]).cpu(), p.index.detach().cpu(), p.labels.detach().cpu().long(),
            adversarial, solved.steps[rows], solved.converged[rows], solved.kept[rows], warm[rows], asdict(s),
        ))
    return results


def _warm_starts(problem: MapProblem, previous: FrequencyMaps | None, init: torch.Tensor) -> torch.Tensor:
    """(n,) bool: the problem's images that `previous` holds a map for (same index and target); their start
    maps are written into init (n, C, H, W), fftshift-ed, in place."""
    n = len(problem.x)
    if previous is None or not len(previous):
        return torch.zeros(n, dtype=torch.bool)
    if previous.maps.shape[1:] != problem.x.shape[1:]:
        raise UserInputError(f"previous {previous.kind} maps are {tuple(previous.maps.shape[1:])}, the images "
                             f"{tuple(problem.x.shape[1:])}: they cannot warm-start these maps")
    order = previous.index.argsort()
    known = previous.index[order]
    index, target = problem.index.cpu(), problem.target.cpu()
    row = order[torch.searchsorted(known, index).clamp(max=len(known) - 1)]
    found = (previous.index[row] == index) & (previous.targets[row] == target)
    init[found.to(init.device)] = previous.maps[row[found]].to(init)
    return found


def _solve_warm_then_cold(model: nn.Module, x: torch.Tensor, target: torch.Tensor, init: torch.Tensor,
                          warm: torch.Tensor, s: MapSettings, warm_min_steps: int, progress: bool) -> _Solved:
    """The warm rule for the rows where `warm` (n,) is set, then the full rule for the others and for the warm
    rows that did not converge (from where they stopped, their steps adding up). x: (n, C, H, W); target: (n,);
    init: (n, C, H, W) unshifted start maps; the model already frozen."""
    out = _Solved.empty(x)
    cold = (~warm).nonzero().squeeze(1).cpu()
    steps_before = torch.zeros(len(cold), dtype=torch.long)
    with tqdm(total=len(x), desc="maps", unit="map", disable=not progress) as bar:
        if warm.any():
            rows = warm.nonzero().squeeze(1).cpu()
            rule = s.warm_rule(warm_min_steps)
            first = _solve(model, x, target, init, rows, rule, bar)
            out.put(rows[first.converged], first.take(first.converged))
            going_on = first.take(~first.converged)
            init = init.clone()
            init[rows[~first.converged].to(init.device)] = going_on.maps
            cold = torch.cat([cold, rows[~first.converged]])
            steps_before = torch.cat([steps_before, going_on.steps])
            bar.total += len(going_on.steps)
        second = _solve(model, x, target, init, cold, s, bar)
        second.steps += steps_before
        out.put(cold, second)
    return out


def _solve(model: nn.Module, x: torch.Tensor, target: torch.Tensor, init: torch.Tensor, rows: torch.Tensor,
           s: MapSettings, bar: tqdm) -> _Solved:
    """The batched solve of the images x[rows] with targets target[rows] from the unshifted maps init[rows]
    (rows: (k,) CPU positions), the model already frozen; counts stopped images on `bar`."""
    on_device = rows.to(x.device)
    x, target, init = x[on_device], target[on_device], init[on_device]
    k = len(x)
    out = _Solved.empty(x)
    batch, queued = _start(x, target, init, 0, 0, s), 0
    while queued < k or len(batch):
        if queued < k and len(batch) < s.batch_size:
            fresh = _start(x, target, init, queued, min(k, queued + s.batch_size - len(batch)), s)
            batch, queued = batch.join(fresh), queued + len(fresh)
        converged = _adam_step(model, batch, s)
        done = converged | (batch.t >= s.last_step)
        if done.any():
            finished = batch.take(done)
            with torch.no_grad():
                predicted = _forward(model, apply_mask(None, finished.mask, finished.spectrum), s).argmax(1)
            out.put(finished.rows, _Solved(finished.mask, finished.t.cpu(), converged[done].cpu(),
                                           (predicted == finished.target).cpu()))
            batch = batch.take(~done)
            bar.update(len(finished))
    return out


def _start(x: torch.Tensor, target: torch.Tensor, init: torch.Tensor, first: int, stop: int, s: MapSettings) -> _Batch:
    """Fresh solver state for the queued images first..stop-1 (masks at their unshifted start maps)."""
    rows = torch.arange(first, stop, device=x.device)
    mask = init[rows].clone()
    spectrum = torch.fft.fft2(x[rows]) if len(rows) else x[rows] * 1j  # (MKL's FFT rejects an empty batch)
    return _Batch(
        rows=rows, spectrum=spectrum, target=target[rows], mask=mask, m=torch.zeros_like(mask),
        v=torch.zeros_like(mask), t=torch.zeros(len(rows), dtype=torch.long, device=x.device),
        history=torch.zeros(len(rows), s.window, dtype=x.dtype, device=x.device),
        anchor=mask.clone() if s.fast else mask.new_zeros(len(rows), 0),
    )


def _adam_step(model: nn.Module, batch: _Batch, s: MapSettings) -> torch.Tensor:
    """One Adam step on every mask of the working batch; returns the (k,) stop flags of the rule: the paper's
    judged on the losses before the step, the fast rule's on the maps after it."""
    mask = batch.mask.requires_grad_(True)
    logits = _forward(model, apply_mask(None, mask, batch.spectrum), s)
    loss = F.cross_entropy(logits, batch.target, reduction="none") + s.lam * mask.abs().flatten(1).sum(1)
    (grad,) = torch.autograd.grad(loss.sum(), mask)
    with torch.no_grad():
        batch.t = batch.t + 1
        batch.mask, batch.m, batch.v = adam_update(mask.detach(), grad, batch.m, batch.v, batch.t, s)
        if s.fast:
            return record_change(batch.anchor, batch.mask, batch.t, s)
        return record_loss(batch.history, loss.detach(), batch.t, s)


def _forward(model: nn.Module, x: torch.Tensor, s: MapSettings) -> torch.Tensor:
    """The model's logits (k, classes) on masked images x (k, C, H, W), under bfloat16 autocast if s.autocast
    (the logits come back in x's dtype; masks, FFTs and Adam never leave it)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=s.autocast):
        return model(x).to(x.dtype)


def adam_update(p: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, t: torch.Tensor,
                s: MapSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch.optim.Adam's update (no weight decay) of k independent parameters p: (k, ...) with their own step
    counts t: (k,) (this step included, so bias correction is per row), then the clamp to [0, 1]; lr and betas
    from `s.adam_constants()` (the fast rule's time-scaled step). Returns the new (p, m, v)."""
    lr, b1, b2 = s.adam_constants()
    m = torch.lerp(m, grad, 1 - b1)
    v = torch.addcmul(v * b2, grad, grad, value=1 - b2)
    t = t.to(p.dtype).view(-1, *([1] * (p.dim() - 1)))
    denom = (v.sqrt() / (1 - b2 ** t).sqrt()).add_(s.eps)
    return (p - (lr / (1 - b1 ** t)) * (m / denom)).clamp_(0, 1), m, v


def record_loss(history: torch.Tensor, loss: torch.Tensor, t: torch.Tensor, s: MapSettings) -> torch.Tensor:
    """Write loss (k,) into the ring buffers history (k, window) at step t (k,) (this step included) and
    return the (k,) flags t > min_steps and |loss - mean of the last min(t, window) losses| < tol."""
    history[torch.arange(len(t), device=t.device), (t - 1) % s.window] = loss
    recent = history.sum(1) / t.clamp(1, s.window)
    return (t > s.min_steps) & ((loss - recent).abs() < s.tol)


def record_change(anchor: torch.Tensor, mask: torch.Tensor, t: torch.Tensor, s: MapSettings) -> torch.Tensor:
    """The fast rule's stop: at the rows whose step t (k,) is a multiple of change_window, compare the masks
    (k, C, H, W) with their anchors (k, C, H, W), the masks change_window steps earlier, then move the anchors
    there (in place). Returns the (k,) flags t > fast_min_steps and relative L1 change < change_tol."""
    due = t % s.change_window == 0
    change = (mask - anchor).abs().flatten(1).sum(1) / mask.abs().flatten(1).sum(1).clamp_min(1.0)
    anchor[due] = mask[due]
    return due & (t > s.fast_min_steps) & (change < s.change_tol)


def essential_maps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: MapSettings | None = None, *,
    init: torch.Tensor | None = None, index: torch.Tensor | None = None, previous: FrequencyMaps | None = None,
    warm_min_steps: int = 50, progress: bool = True, **overrides,
) -> FrequencyMaps:
    """Essential maps of correctly classified clean images: the sparsest maps that keep the true label.

    x: (n, C, H, W) in [0, 1]; y: (n,) int64 true labels. Any MapSettings field may be given as a keyword
    (e.g. lam=0.1) to override `settings`; init, index as in `MapProblem`; previous, warm_min_steps, progress as
    in `solve_maps`.
    """
    s = resolve_settings(settings, overrides, MapSettings())
    problem = MapProblem("essential", x, y, index=index, init=init)
    earlier = [] if previous is None else [previous]
    return solve_maps(model, [problem], s, previous=earlier, warm_min_steps=warm_min_steps, progress=progress)[0]


def adversarial_maps(
    model: nn.Module, x_adv: torch.Tensor, y_adv: torch.Tensor, y: torch.Tensor | None = None,
    settings: MapSettings | None = None, *, init: torch.Tensor | None = None, index: torch.Tensor | None = None,
    previous: FrequencyMaps | None = None, warm_min_steps: int = 50, progress: bool = True, **overrides,
) -> FrequencyMaps:
    """Adversarial maps of successfully attacked images: the sparsest maps that keep the adversarial label.

    x_adv: (n, C, H, W) in [0, 1]; y_adv: (n,) int64 adversarial labels (argmax f(x_adv)); y: (n,) the true
    labels, stored with the maps (default: y_adv). Keywords as `essential_maps`.
    """
    s = resolve_settings(settings, overrides, MapSettings())
    problem = MapProblem("adversarial", x_adv, y_adv, labels=y, index=index, init=init)
    earlier = [] if previous is None else [previous]
    return solve_maps(model, [problem], s, previous=earlier, warm_min_steps=warm_min_steps, progress=progress)[0]
