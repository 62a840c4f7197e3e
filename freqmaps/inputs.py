"""Checks on what users hand to the solvers and attacks, and the model state they run under."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from freqmaps.errors import UserInputError


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """x must be a floating (B, C, H, W) tensor with values in [0, 1] (tolerance 1e-6)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserInputError(f"{name} must be a float tensor of shape (B, C, H, W), got {shape}")
    if x.numel() and (x.min() < -1e-6 or x.max() > 1 + 1e-6):
        raise UserInputError(
            f"{name} must hold pixels in [0, 1] (got min {x.min().item():.3g}, max {x.max().item():.3g}); "
            "pass unnormalised images: normalisation belongs inside the model"
        )


def check_labels(y: torch.Tensor, batch: int, name: str = "y") -> None:
    """y must be an integer tensor of shape (batch,)."""
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32) or y.shape != (batch,):
        shape = (tuple(y.shape), y.dtype) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserInputError(f"{name} must be an int64 tensor of shape ({batch},), got {shape}")


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode with parameter gradients off, and with autograd on even inside `no_grad` or
    `inference_mode` (a Lightning validation step); every module's mode and each parameter's requires_grad
    are restored afterwards, also on error. Tensors made under inference mode must be cloned inside."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def own_batch(x: torch.Tensor, y: torch.Tensor,
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Private copies of a checked batch, to be made inside `frozen_eval` so that they are ordinary autograd
    tensors even when the caller runs under inference mode: x clipped to [0, 1] (it may overshoot by the
    tolerance of `check_images`), in channels-last memory format if asked (else x's own), y as int64 on
    x's device."""
    layout = torch.channels_last if channels_last else torch.preserve_format
    return (x.detach().clone(memory_format=layout).clamp_(0, 1),
            y.detach().to(device=x.device, dtype=torch.long, copy=True))
