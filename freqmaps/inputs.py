"""Checks on what users hand to the solvers and attacks, and the model state they run under."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from freqmaps.errors import UserInputError


def check_images(x: torch.Tensor, name: str = "x") -> None:
    """x must be a floating (B, C, H, W) tensor of finite values in [0, 1] (tolerance 1e-6)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserInputError(f"{name} must be a float tensor of shape (B, C, H, W), got {shape}")
    if x.numel() and not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten()
        raise UserInputError(f"{name} holds NaN or infinite pixels (images {bad.tolist()[:10]} of {len(x)}); "
                             "every pixel must be a finite value in [0, 1]")
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


def check_model_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, data: str = "the data") -> None:
    """The model must take images shaped like x: (n, C, H, W) (its first convolution's input channels equal C,
    one forward pass on x[:1] runs) and give a logit for every label of y: (n,); UserInputError naming both."""
    check_images(x)
    first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    if isinstance(first, nn.Conv2d) and first.in_channels != x.shape[1]:
        raise UserInputError(f"the model takes {first.in_channels}-channel images, {data} has {x.shape[1]} "
                             f"channels ({tuple(x.shape[1:])}): analyse it on the data it was trained on")
    device = next(model.parameters(), x).device
    with frozen_eval(model), torch.no_grad():
        try:
            logits = model(x[:1].to(device))
        except RuntimeError as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            raise UserInputError(f"the model does not take {data}'s images {tuple(x.shape[1:])} "
                                 f"({first_line})") from None
    check_label_range(y, logits.shape[1], data)


def check_label_range(y: torch.Tensor, num_classes: int, data: str = "the data") -> None:
    """Every label of y: (n,) must be a class of a model with `num_classes` logits."""
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes:
        raise UserInputError(f"{data} has labels {int(y.min())}..{int(y.max())}, the model gives "
                             f"{num_classes} classes")


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


@contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Run `model` with its 4-D floating parameters and buffers (convolution kernels) in channels-last memory
    format, so that oneDNN's CPU convolutions run in NHWC whatever the input's
    layout; the original tensors are put back afterwards, also on error (the same storage: values, strides and
    optimizer state untouched). The values never change, only the order in memory, so results differ from
    NCHW at float rounding (another convolution algorithm). Meant for analyses under `frozen_eval`: parameters
    must not be updated inside. `enabled=False` leaves the model as it is."""
    undo: list[Callable[[], None]] = []  # how to put each swapped tensor back, recorded as it is swapped
    try:
        if enabled:
            for module in model.modules():
                for store in (module._parameters, module._buffers):
                    for name, tensor in store.items():
                        if tensor is None or tensor.dim() != 4 or not tensor.is_floating_point():
                            continue
                        converted = tensor.data.contiguous(memory_format=torch.channels_last)
                        if converted.data_ptr() == tensor.data.data_ptr():
                            continue  # already channels-last (or a layout both formats share)
                        if isinstance(tensor, nn.Parameter):  # the parameter keeps its identity
                            undo.append(lambda tensor=tensor, data=tensor.data: setattr(tensor, "data", data))
                            tensor.data = converted
                        else:
                            undo.append(lambda store=store, name=name, tensor=tensor: store.__setitem__(name, tensor))
                            store[name] = converted
        yield model
    finally:
        for put_back in reversed(undo):
            put_back()


def own_batch(x: torch.Tensor, y: torch.Tensor,
              channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Private copies of a checked batch, to be made inside `frozen_eval` so that they are ordinary autograd
    tensors even when the caller runs under inference mode: x clipped to [0, 1] (it may overshoot by the
    tolerance of `check_images`), in channels-last memory format if asked (else x's own), y as int64 on
    x's device."""
    layout = torch.channels_last if channels_last else torch.preserve_format
    return (x.detach().clone(memory_format=layout).clamp_(0, 1),
            y.detach().to(device=x.device, dtype=torch.long, copy=True))
