"""Seeded draws: which images an analysis looks at, and random numbers that leave the caller's streams alone.

`seeded_indices` + `take` are the one way images are drawn from a dataset (analyze.py, the probe callbacks, the
benchmarks), so the same `seed` and size give the same images, in the same order, everywhere.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import Dataset

from freqmaps.errors import UserInputError


def seeded_indices(n_total: int, n: int, seed: int) -> torch.Tensor:
    """n distinct indices of range(n_total) drawn with `seed`, ascending: (n,) int64 (the first n of a seeded
    permutation, sorted). UserInputError unless 1 <= n <= n_total."""
    if not 1 <= n <= n_total:
        raise UserInputError(f"asked for {n} images but there are {n_total}")
    order = torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))
    return order[:n].sort().values


def take(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The items at `indices` (n,) of a dataset of (image (C, H, W) in [0, 1], label) pairs:
    x (n, C, H, W) float32 and y (n,) int64."""
    items = [dataset[i] for i in indices.tolist()]
    x = torch.stack([torch.as_tensor(image) for image, _ in items]).float()
    y = torch.as_tensor([int(label) for _, label in items], dtype=torch.long)
    return x, y


@contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Run the body with torch's CPU generator (and `device`'s CUDA generator) seeded with `seed`; their states
    are restored afterwards, so the caller's random streams continue as if the body had not run."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[device.index if device.index is not None else 0].manual_seed(seed)
        yield
