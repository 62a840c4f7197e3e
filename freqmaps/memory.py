"""The map solver's memory per image, and the working batch that fits a budget (`MapSettings.memory_gib`).

A map is as large as its image (3 x 224 x 224 = 150,528 entries at 224 px), and each image in the working batch
costs (a) the activations autograd keeps for the backward to the mask (measured: the tensors the forward of one
masked image saves, parameters left out, under the same autocast as the solver), plus the largest of them twice
over for the gradients alive during the backward, and (b) the solver's own state: the image's spectrum (complex,
2 floats an entry), mask, Adam's two moments, the gradient, the fast rule's anchor, the masked image and the FFT's
complex temporaries: SOLVER_FLOATS floats an entry in all, in the image's dtype.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.fourier import apply_mask

SOLVER_FLOATS = 16  # solver state per map entry, in floats of the image's dtype (module docstring)
GIB = 2**30


def _saved_bytes(model: nn.Module, x: torch.Tensor, autocast: bool) -> tuple[int, int]:
    """(total, largest) bytes of the tensors autograd saves in the forward of the masked images x, parameters
    and buffers left out."""
    fixed = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in fixed:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    mask = torch.ones_like(x, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        model(apply_mask(x, mask))
    return sum(saved.values()), max(saved.values(), default=0)


def footprint(model: nn.Module, x: torch.Tensor, autocast: bool = False) -> tuple[int, int]:
    """(fixed, per_image): estimated peak bytes of the solver's working batch are fixed + per_image * batch.
    Measured from the forwards of one and of two images of x (N, C, H, W) (the first one repeated), so what
    does not grow with the batch (autocast's bfloat16 copies of the weights) lands in `fixed`; the model's own
    parameters are not counted."""
    image = x[:1].detach()
    one, largest = _saved_bytes(model, image, autocast)
    two, _ = _saved_bytes(model, image.expand(2, *image.shape[1:]).contiguous(), autocast)
    activations = max(two - one, 0) + 2 * largest  # the gradients alive during the backward
    per_image = activations + SOLVER_FLOATS * image.numel() * image.element_size()
    return max(one - (two - one), 0), per_image


def working_batch(model: nn.Module, x: torch.Tensor, batch_size: int, memory_gib: float | None,
                  autocast: bool = False) -> int:
    """The solver's working batch: `batch_size`, or with a budget the largest batch whose estimated memory
    (`footprint`) fits `memory_gib`, at most `batch_size`. UserInputError when not even one image fits,
    saying what one needs and which knobs lower it."""
    if memory_gib is None or not len(x):
        return batch_size
    fixed, per_image = footprint(model, x, autocast)
    fits = math.floor((memory_gib * GIB - fixed) / per_image)
    if fits < 1:
        raise UserInputError(
            f"maps.memory_gib {memory_gib} holds no {_size(x)} image: one needs about {(fixed + per_image) / GIB:.2f} "
            "GiB with this model; raise maps.memory_gib, or set maps.autocast true (bfloat16 activations)")
    return min(batch_size, fits)


def out_of_memory(error: BaseException, x: torch.Tensor, batch_size: int) -> UserInputError | None:
    """For an allocation failure (CUDA's OutOfMemoryError, or the CPU allocator's) while solving the maps of x
    (n, C, H, W) `batch_size` at a time, the error naming the knobs; None for any other error."""
    if not (isinstance(error, torch.OutOfMemoryError) or (
            isinstance(error, RuntimeError) and "can't allocate memory" in str(error))):
        return None
    return UserInputError(
        f"out of memory solving {_size(x)} maps {batch_size} at a time: lower maps.batch_size, or set "
        "maps.memory_gib to the memory the solver may use (the batch is then picked to fit it)")


def _size(x: torch.Tensor) -> str:
    """An image's shape as `CxHxW`."""
    return "x".join(str(n) for n in x.shape[1:])
