"""Class-level frequency maps and the defence they suggest (docs/method.md §4).

One map M_c per class c, trained on
  (a) the correctly classified clean images of class c, with their true label, and
  (b) the adversarial images whose adversarial label is c (and whose clean version was correct), with their
      *true* label,
by alternating Adam steps on the two sets (one round = a step on (a), then a step on (b)), each minimising

    mean_i CE(f(Re F^-1(M_c * F(x_i))), y_i) + lam * sum |M_c|

with lam = 0.001, lr 0.01, M_c clamped to [0, 1]. A class stops after more than `min_steps` rounds once its
round loss (the mean of its two set losses) moves less than `tol` = 1e-3 from the mean of its last `window`
round losses, or at `max_steps` rounds. All classes are solved together (exactly: each class's loss reaches
only its own map, Adam is elementwise); a class with no images in a set skips that set's steps, and a
stopped class's images leave the computation.

Evaluation (`evaluate_class_maps`): the paper's, which uses the labels, and a label-free defence that applies
the map of the class the model predicts for the input it sees.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from freqmaps.chunks import digest
from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically
from freqmaps.fourier import apply_mask, fftshift2, ifftshift2
from freqmaps.inputs import check_images, check_labels, frozen_eval
from freqmaps.maps import MapSettings, adam_update, record_loss, resolve_settings, speed_free

CLASS_MAP_SETTINGS = MapSettings(lam=1e-3, lr=0.01, min_steps=500, max_steps=5000, tol=1e-3, window=20)
CHECKPOINT_ROUNDS = 25  # rounds between two saves of the solver's state when `class_maps` has a checkpoint file


@dataclass
class ClassMaps:
    """maps: (K, C, H, W) in [0, 1], fftshift-ed, one per class. steps: (K,) rounds taken. converged: (K,)
    bool, stopped by the tolerance rule. clean_counts / adversarial_counts: (K,) images in sets (a) and (b)
    of each class (a class with none in both keeps its all-ones map, steps 0). settings: as a dict."""

    maps: torch.Tensor
    steps: torch.Tensor
    converged: torch.Tensor
    clean_counts: torch.Tensor
    adversarial_counts: torch.Tensor
    settings: dict

    _TENSORS = ("maps", "steps", "converged", "clean_counts", "adversarial_counts")

    def state(self) -> dict:
        """Tensors (on the CPU) and plain values only: what `save` writes."""
        return {"settings": dict(self.settings), **{k: getattr(self, k).cpu() for k in self._TENSORS}}

    @classmethod
    def from_state(cls, data: dict, source: str = "the state") -> ClassMaps:
        """The inverse of `state`; `source` names where `data` came from in the error for a foreign dict."""
        missing = [k for k in ("settings", *cls._TENSORS) if k not in data]
        if missing:
            raise UserInputError(f"{source} is not a saved ClassMaps file (missing {', '.join(missing)})")
        return cls(*(data[k] for k in cls._TENSORS), data["settings"])

    def save(self, path: str | Path) -> None:
        """One file of tensors and plain values, loadable with `torch.load(..., weights_only=True)`."""
        torch.save(self.state(), path)

    @classmethod
    def load(cls, path: str | Path) -> ClassMaps:
        """Read a file written by `save` (safe loading: no arbitrary pickle is executed)."""
        if not Path(path).is_file():
            raise UserInputError(f"no class-maps file at {path} (write one with ClassMaps.save or analyze.py)")
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True), str(path))


@dataclass
class ClassMapResult:
    """How class maps act as a defence.

    The paper's (label-using) rates: `still_correct`, over the clean images the model gets right, the
    fraction still right when masked with the map of their true label; `adversarial_undone`, over the
    adversarial images that fool the model (clean version right), the fraction classified as the true label
    when masked with the map of their adversarial label.
    Label-free (deployable): every input is masked with the map of the class the model predicts for it;
    `clean_accuracy` / `adversarial_accuracy` over *all* clean / adversarial images, next to the model's
    accuracies without maps (`clean_accuracy_unmasked`, `adversarial_accuracy_unmasked`). (On the paper's
    subsets the predicted class is the label the paper uses, so the leak is in choosing those subsets.)
    """

    still_correct: float
    adversarial_undone: float
    clean_accuracy: float
    adversarial_accuracy: float
    clean_accuracy_unmasked: float
    adversarial_accuracy_unmasked: float
    n_images: int
    n_correct: int
    n_fooled: int


def predict(model: nn.Module, x: torch.Tensor, batch_size: int, maps: torch.Tensor | None = None,
            classes: torch.Tensor | None = None) -> torch.Tensor:
    """argmax f(x) (n,), or of x masked with maps[classes[i]] (maps unshifted, (K, C, H, W)), in chunks of
    batch_size, without autograd; the model is run in the mode it is in (callers use frozen_eval)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            if maps is not None:
                chunk = apply_mask(chunk, maps[classes[start:start + batch_size]])
            out.append(model(chunk).argmax(1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def _mean_ce_and_grad(model: nn.Module, maps: torch.Tensor, spectra: torch.Tensor, classes: torch.Tensor,
                      labels: torch.Tensor, counts: torch.Tensor, stepping: torch.Tensor,
                      batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For one image set: per class, the mean CE of its images masked with the class map, (K,), and its
    gradient w.r.t. maps (K, C, H, W, unshifted); only images of `stepping` classes are evaluated, in chunks
    of batch_size (exact: the loss is a sum over images)."""
    ce = torch.zeros(len(maps), dtype=maps.dtype, device=maps.device)
    grad = torch.zeros_like(maps)
    mask = maps.detach().requires_grad_(True)
    for chunk in stepping[classes].nonzero().squeeze(1).split(batch_size):
        c = classes[chunk]
        logits = model(apply_mask(None, mask[c], spectra[chunk]))
        losses = F.cross_entropy(logits, labels[chunk], reduction="none") / counts[c]
        grad += torch.autograd.grad(losses.sum(), mask)[0]
        ce.index_add_(0, c, losses.detach())
    return ce, grad


def class_maps(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    num_classes: int,
    settings: MapSettings | None = None,
    *,
    progress: bool = True,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = CHECKPOINT_ROUNDS,
    **overrides,
) -> ClassMaps:
    """Class-level maps (see the module docstring) from clean images x: (n, C, H, W) in [0, 1] with true
    labels y: (n,) int64, and their adversarial versions x_adv: (n, C, H, W) in [0, 1] (x_adv[i] attacks x[i]).
    The selection is done here: the clean images the model gets right form set (a); of those, the adversarial
    versions that fool the model (adversarial label = argmax f(x_adv)) form set (b). Defaults are
    CLASS_MAP_SETTINGS (lam 1e-3, tol 1e-3); any MapSettings field may be overridden by keyword; batch_size
    is the number of images per forward pass. progress: a tqdm bar of classes stopped / classes with images.
    checkpoint: a file the solver's whole state is saved to every `checkpoint_every` rounds and, when it holds
    the state of the same problem (inputs and settings), resumed from: a killed run loses at most that many
    rounds, and the resumed result is the uninterrupted one, bit for bit where the arithmetic is deterministic
    (one CPU thread; with more, the scatter-adds of the maps' gradient vary run to run at ~1e-5 anyway).
    """
    s = resolve_settings(settings, overrides, CLASS_MAP_SETTINGS)
    if s.fast:
        raise UserInputError("class maps are solved by the paper's rule only: set solver to 'paper'")
    check_images(x)
    check_images(x_adv, "x_adv")
    if x_adv.shape != x.shape:
        raise UserInputError(f"x_adv must be shaped like x {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    check_labels(y, len(x))
    if num_classes < 1 or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
        raise UserInputError(f"labels must lie in 0..{num_classes - 1} for num_classes={num_classes}")
    K = num_classes
    with frozen_eval(model):
        x, x_adv, y = x.detach().clone(), x_adv.detach().clone(), y.detach().clone().long().to(x.device)
        correct = predict(model, x, s.batch_size) == y
        y_adv = predict(model, x_adv, s.batch_size)
        fooled = correct & (y_adv != y)
        # (spectra, class of the map, CE target) of set (a) and set (b)
        sets = [(torch.fft.fft2(x[correct]), y[correct], y[correct]),
                (torch.fft.fft2(x_adv[fooled]), y_adv[fooled], y[fooled])]
        counts = [torch.bincount(classes, minlength=K) for _, classes, _ in sets]
        maps = torch.ones(K, *x.shape[1:], dtype=x.dtype, device=x.device)  # unshifted layout
        m, v = torch.zeros_like(maps), torch.zeros_like(maps)
        adam_steps = torch.zeros(K, dtype=torch.long, device=x.device)
        rounds = torch.zeros(K, dtype=torch.long, device=x.device)
        history = torch.zeros(K, s.window, dtype=x.dtype, device=x.device)
        converged = torch.zeros(K, dtype=torch.bool, device=x.device)
        active = (counts[0] + counts[1]) > 0
        sets_per_class = (counts[0] > 0).to(x.dtype) + (counts[1] > 0).to(x.dtype)
        loop = {"maps": maps, "m": m, "v": v, "adam_steps": adam_steps, "rounds": rounds, "history": history,
                "converged": converged, "active": active}  # the solver's state, updated in place
        total = int(active.sum())
        if checkpoint is not None:  # what the saved state must have been solving (hashed only when there is one)
            problem = digest({"x": x, "x_adv": x_adv, "y": y}) + json.dumps(speed_free(s), sort_keys=True)
            if Path(checkpoint).is_file():
                saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
                if saved.get("problem") != problem:
                    raise UserInputError(f"{checkpoint} holds the class-map solver's state of another problem; "
                                         "remove it to start over")
                for name, tensor in loop.items():
                    tensor.copy_(saved[name])
        with tqdm(total=total, initial=total - int(active.sum()), desc="class maps", unit="class",
                  disable=not progress) as bar:
            done = 0
            while active.any():
                round_loss = torch.zeros(K, dtype=x.dtype, device=x.device)
                for (spectra, classes, labels), count in zip(sets, counts):
                    stepping = active & (count > 0)
                    ce, grad = _mean_ce_and_grad(model, maps, spectra, classes, labels, count.clamp_min(1).to(x),
                                                 stepping, s.batch_size)
                    round_loss += torch.where(stepping, ce + s.lam * maps.abs().flatten(1).sum(1), 0.0)
                    rows = stepping.nonzero().squeeze(1)
                    adam_steps[rows] += 1
                    maps[rows], m[rows], v[rows] = adam_update(
                        maps[rows], grad[rows] + s.lam * maps[rows].sign(), m[rows], v[rows], adam_steps[rows], s)
                rows = active.nonzero().squeeze(1)
                rounds[rows] += 1
                recent = history[rows]  # a copy: record_loss writes into it
                stop_tol = torch.zeros_like(active)
                stop_tol[rows] = record_loss(recent, (round_loss / sets_per_class)[rows], rounds[rows], s)
                history[rows] = recent
                stop = stop_tol | (active & (rounds >= s.max_steps))
                converged |= stop_tol
                active &= ~stop
                bar.update(int(stop.sum()))
                done += 1
                if checkpoint is not None and (done % checkpoint_every == 0 or not active.any()):
                    state = {"problem": problem, **{name: tensor.cpu() for name, tensor in loop.items()}}
                    write_atomically(checkpoint, lambda path, state=state: torch.save(state, path))
    return ClassMaps(fftshift2(maps).cpu(), rounds.cpu(), converged.cpu(), counts[0].cpu(), counts[1].cpu(),
                     asdict(s))


class ClassMapDefence(nn.Module):
    """The label-free defence as a model: x -> f(Re F^-1(M_c * F(x))) with c = argmax f(x), the class the model
    predicts for the input it sees. The class choice carries no gradient; the masked path does, so a gradient
    attack on this module sees the maps (an adaptive attack).

    model: the classifier (pixels in [0, 1] -> logits); maps: (K, C, H, W) fftshift-ed class maps.
    forward(x: (B, C, H, W)) -> logits (B, K).
    """

    def __init__(self, model: nn.Module, maps: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("maps", ifftshift2(maps.detach().float()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            classes = self.model(x).argmax(1)
        return self.model(apply_mask(x, self.maps[classes].to(x.dtype)))


def evaluate_class_maps(
    model: nn.Module, maps: ClassMaps | torch.Tensor, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
    batch_size: int = 256,
) -> ClassMapResult:
    """Apply class maps (ClassMaps or (K, C, H, W) fftshift-ed) to held-out clean images x: (n, C, H, W) in
    [0, 1] with labels y: (n,) and their adversarial versions x_adv; see ClassMapResult for the rates (nan
    for a rate over no images)."""
    check_images(x)
    check_images(x_adv, "x_adv")
    check_labels(y, len(x))
    table = maps.maps if isinstance(maps, ClassMaps) else maps
    if table.dim() != 4 or table.shape[1:] != x.shape[1:]:
        raise UserInputError(f"class maps must be (K, {', '.join(map(str, x.shape[1:]))}), got {tuple(table.shape)}")
    with frozen_eval(model):
        x, x_adv, y = x.detach().clone(), x_adv.detach().clone(), y.detach().clone().to(x.device)
        table = ifftshift2(table.detach().to(x))
        pred, pred_adv = predict(model, x, batch_size), predict(model, x_adv, batch_size)
        correct, fooled = pred == y, (pred == y) & (pred_adv != y)
        masked = predict(model, x, batch_size, table, pred)  # map of the predicted class = true label if correct
        masked_adv = predict(model, x_adv, batch_size, table, pred_adv)

    def rate(hits: torch.Tensor, over: torch.Tensor) -> float:
        return (hits & over).sum().item() / over.sum().item() if over.any() else float("nan")

    everything = torch.ones_like(correct)
    return ClassMapResult(
        still_correct=rate(masked == y, correct),
        adversarial_undone=rate(masked_adv == y, fooled),
        clean_accuracy=rate(masked == y, everything),
        adversarial_accuracy=rate(masked_adv == y, everything),
        clean_accuracy_unmasked=rate(correct, everything),
        adversarial_accuracy_unmasked=rate(pred_adv == y, everything),
        n_images=len(x), n_correct=int(correct.sum()), n_fooled=int(fooled.sum()),
    )
