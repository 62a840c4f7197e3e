"""What the per-epoch analysis callbacks share: a fixed, seeded probe set from the stage's data, dealt to the
processes in equal batches, gathered back into probe order, and guards that keep the analysis out of training.

The probe is `probe_size` dataset indices drawn once with `seed` (ascending). It is cut into batches of
`batch_size` images, numbered 0, 1, ...; process `rank` of `world_size` handles batches rank, rank + world_size,
..., and the number of batches is padded up to a multiple of world_size (a padding batch, or the tail of the
last batch, repeats probe image 0, is marked position -1 and is never attacked or solved), so every process
holds the same shapes and takes part in every collective. A batch's random numbers come from a generator seeded with `seed + batch number`,
so its attack draws the same starts, and its maps see the same batch, whatever the number of processes: a
multi-process analysis gives what a single process gives, up to float rounding.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from freqmaps.errors import UserInputError
from freqmaps.inputs import frozen_eval

FAST_DEV_RUN_PROBE = 8  # probe images under Trainer(fast_dev_run=...): the analysis runs, on almost nothing


@dataclass
class ProbeShard:
    """This process's share of the probe, `rows` = batches x batch_size rows, the same on every process.

    x: (rows, C, H, W) float in [0, 1] (CPU); y: (rows,) int64 labels; position: (rows,) int64, the row's place
    in the probe (-1 for padding); index: (rows,) int64 dataset indices; batches: the global batch numbers.
    """

    x: torch.Tensor
    y: torch.Tensor
    position: torch.Tensor
    index: torch.Tensor
    batches: list[int]
    batch_size: int
    probe_size: int

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(batch number, (k,) int64 shard rows of its probe images) for each batch holding any (padding rows are
        left out: they only keep the shapes equal for the gather)."""
        for i, number in enumerate(self.batches):
            rows = torch.arange(i * self.batch_size, (i + 1) * self.batch_size)
            rows = rows[self.position[rows] >= 0]
            if len(rows):
                yield number, rows


def probe_indices(dataset_size: int, probe_size: int, seed: int) -> torch.Tensor:
    """min(probe_size, dataset_size) distinct dataset indices drawn with `seed`, ascending: (n,) int64."""
    order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(seed))
    return order[:probe_size].sort().values


def dealt_batches(probe_size: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """The batch numbers process `rank` handles; every process gets ceil(batches / world_size) of them."""
    batches = math.ceil(probe_size / batch_size)
    return list(range(rank, math.ceil(batches / world_size) * world_size, world_size))


def load_shard(dataset: Dataset, indices: torch.Tensor, batch_size: int, rank: int, world_size: int) -> ProbeShard:
    """Read this process's probe images from `dataset` (items (image (C, H, W) in [0, 1], label)). A probe
    smaller than `batch_size` is one batch of its own size."""
    batch_size = min(batch_size, len(indices))
    batches = dealt_batches(len(indices), batch_size, rank, world_size)
    position = torch.cat([torch.arange(b * batch_size, (b + 1) * batch_size) for b in batches])
    position[position >= len(indices)] = -1
    index = indices[position.clamp_min(0)]
    items = [dataset[i] for i in index.tolist()]
    x = torch.stack([torch.as_tensor(image) for image, _ in items]).float()
    y = torch.as_tensor([int(label) for _, label in items], dtype=torch.long)
    return ProbeShard(x, y, position, index, batches, batch_size, len(indices))


def gather_rows(trainer: L.Trainer, shard: ProbeShard, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """All-gather per-row results and put them in probe order. A collective: every process must call it with
    the same names, dtypes and shapes. rows: {name: (shard rows, ...)} -> {name: (probe_size, ...)} on CPU
    (bool tensors travel as uint8 and come back bool)."""
    device = trainer.strategy.root_device

    def gather(t: torch.Tensor) -> torch.Tensor:
        out = trainer.strategy.all_gather(t.to(device))
        return out.reshape(-1, *t.shape[1:]).cpu()

    position = gather(shard.position)
    real = position >= 0
    gathered = {}
    for name, t in rows.items():
        values = gather(t.to(torch.uint8) if t.dtype == torch.bool else t)[real]
        out = values.new_empty((shard.probe_size, *values.shape[1:]))
        out[position[real]] = values
        gathered[name] = out.bool() if t.dtype == torch.bool else out
    return gathered


@contextmanager
def seeded_rng(device: torch.device, seed: int) -> Iterator[None]:
    """Run the body with torch's CPU generator (and `device`'s CUDA generator) seeded with `seed`; their states
    are restored afterwards, so training's random streams continue as if the body had not run."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[device.index if device.index is not None else 0].manual_seed(seed)
        yield


def stage_dataset(trainer: L.Trainer, stage: str) -> Dataset:
    """The dataset behind the first validation ("val") or test ("test") dataloader."""
    loaders = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
    if loader is None or not hasattr(loader, "dataset"):
        raise UserInputError(f"the probe callbacks need a {stage} dataloader with a dataset; the datamodule has none")
    return loader.dataset


class ProbeCallback(L.Callback):
    """Base of the probe analyses. It runs `analyse` at the end of every `every_n_epochs`-th validation epoch of
    a fit (not during the sanity check), and at the end of every `trainer.validate` / `trainer.test` run, on a
    probe drawn from that stage's data; metrics go to `<stage>/<name>/<metric>` (stage "val" or "test").

    The analysis runs with the model in eval mode, its parameters frozen and autograd on (also inside
    inference mode, so `trainer.inference_mode: true` is fine), inside a fork of the RNG streams; model modes,
    `requires_grad` flags and RNG states are restored afterwards, and no parameter gradient or optimizer state
    is touched, so a run with the callback trains exactly as one without. Under `fast_dev_run` it runs every
    epoch on a probe of FAST_DEV_RUN_PROBE images. It logs `seconds`, the analysis' wall time.
    """

    def __init__(self, probe_size: int, every_n_epochs: int, batch_size: int, seed: int, name: str) -> None:
        for key, value in (("probe_size", probe_size), ("every_n_epochs", every_n_epochs),
                           ("batch_size", batch_size)):
            if value < 1:
                raise UserInputError(f"{type(self).__name__}: {key} must be >= 1, got {value}")
        if not name or "/" in name:
            raise UserInputError(f"{type(self).__name__}: name must be a non-empty word without '/', got {name!r}")
        self.probe_size = probe_size
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.seed = seed
        self.name = name
        self._shards: dict[str, tuple[int, ProbeShard]] = {}

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        """Attack / solve this process's shard, gather, and log; returns the scalars logged (rank zero) or {}."""
        raise NotImplementedError

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        fitting = trainer.state.fn == TrainerFn.FITTING
        if fitting and not (trainer.fast_dev_run or (trainer.current_epoch + 1) % self.every_n_epochs == 0):
            return
        self.run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.run(trainer, pl_module, "test")

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        start = time.perf_counter()
        with frozen_eval(pl_module), seeded_rng(pl_module.device, self.seed):
            scalars = self.analyse(trainer, pl_module, stage, self.shard(trainer, stage))
        if trainer.is_global_zero:
            self.log_scalars(pl_module, stage, {**scalars, "seconds": time.perf_counter() - start})

    def shard(self, trainer: L.Trainer, stage: str) -> ProbeShard:
        """This process's probe shard for `stage`, read once per dataset and kept."""
        dataset = stage_dataset(trainer, stage)
        cached = self._shards.get(stage)
        if cached is not None and cached[0] == id(dataset):
            return cached[1]
        size = FAST_DEV_RUN_PROBE if trainer.fast_dev_run else self.probe_size
        if size > len(dataset):
            rank_zero_warn(f"{type(self).__name__}: probe_size {size} exceeds the {len(dataset)} {stage} images; "
                           "probing all of them")
        indices = probe_indices(len(dataset), size, self.seed)
        shard = load_shard(dataset, indices, self.batch_size, trainer.global_rank, trainer.world_size)
        self._shards[stage] = (id(dataset), shard)
        return shard

    def log_scalars(self, pl_module: L.LightningModule, stage: str, scalars: dict[str, float]) -> None:
        """Log `<stage>/<name>/<key>` from rank zero alone (the values are already global)."""
        for key, value in scalars.items():
            pl_module.log(f"{stage}/{self.name}/{key}", float(value), on_step=False, on_epoch=True,
                          rank_zero_only=True)
