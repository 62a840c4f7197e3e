"""What the per-epoch analysis callbacks share: a fixed, seeded probe set from the stage's data, dealt to the
processes in batches, results gathered back in batch order, and guards that keep the analysis out of training.

The probe is `probe_size` dataset indices drawn once with `seed` (`freqmaps.sampling.seeded_indices`: ascending).
It is cut into batches of `batch_size` images, numbered 0, 1, ...; process `rank` of `world_size` handles batches
rank, rank + world_size, ... A batch's random numbers come from generators seeded with `seed + batch number`, so
its attack draws the same starts, and its maps see the same batch, whatever the number of processes; the
per-batch results are gathered to every process and put in batch order (`gather_batches`): a multi-process
analysis gives what a single process gives, up to float rounding.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from freqmaps.errors import UserInputError
from freqmaps.inputs import channels_last, check_model_fits, frozen_eval
from freqmaps.sampling import seeded_indices, seeded_rng, take

FAST_DEV_RUN_PROBE = 8  # probe images under Trainer(fast_dev_run=...): the analysis runs, on almost nothing
Result = TypeVar("Result")


@dataclass
class ProbeShard:
    """This process's share of the probe: the images of its batches, batch after batch.

    x: (rows, C, H, W) float in [0, 1] (CPU); y: (rows,) int64 labels; position: (rows,) int64, the row's place
    in the probe; index: (rows,) int64 dataset indices; batches: the global batch numbers.
    """

    x: torch.Tensor
    y: torch.Tensor
    position: torch.Tensor
    index: torch.Tensor
    batches: list[int]
    batch_size: int

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor]]:
        """(batch number, (k,) int64 shard rows of its probe images) for each batch."""
        for number in self.batches:
            yield number, (self.position // self.batch_size == number).nonzero().squeeze(1)


def dealt_batches(probe_size: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """The batch numbers process `rank` handles: rank, rank + world_size, ... below ceil(probe_size / batch_size)."""
    return list(range(rank, math.ceil(probe_size / batch_size), world_size))


def load_shard(dataset: Dataset, indices: torch.Tensor, batch_size: int, rank: int, world_size: int) -> ProbeShard:
    """Read this process's probe images from `dataset` (items (image (C, H, W) in [0, 1], label)). A probe
    smaller than `batch_size` is one batch of its own size."""
    batch_size = min(batch_size, len(indices))
    batches = dealt_batches(len(indices), batch_size, rank, world_size)
    if not batches:  # more processes than batches: an empty shard, with the images' shape
        x, y = take(dataset, indices[:1])
        return ProbeShard(x[:0], y[:0], torch.zeros(0, dtype=torch.long), indices[:0], batches, batch_size)
    position = torch.cat([torch.arange(b * batch_size, min((b + 1) * batch_size, len(indices))) for b in batches])
    x, y = take(dataset, indices[position])
    return ProbeShard(x, y, position, indices[position], batches, batch_size)


def gather_batches(results: dict[int, Result]) -> list[Result]:
    """Every process's per-batch results ({batch number: result}, CPU objects that pickle) on every process,
    in batch order. A collective: every process calls it once per analysis (with {} if it has no batch)."""
    everyone = [results]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        everyone = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(everyone, results)
    merged = {number: result for part in everyone for number, result in part.items()}
    return [merged[number] for number in sorted(merged)]


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

    With `channels_last` (every subclass's knob, default true) the analysis runs with the model's convolution
    kernels in channels-last memory format (`freqmaps.inputs.channels_last`; the layout is put back after it):
    the same values, faster CPU convolutions (EXPERIMENTS.md, per-epoch overhead), results equal to NCHW up
    to float rounding; false for a model that cannot run so.
    """

    def __init__(self, probe_size: int, every_n_epochs: int, batch_size: int, seed: int, name: str,
                 channels_last: bool = True) -> None:
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
        self.channels_last = channels_last
        self._shards: dict[str, tuple[int, ProbeShard]] = {}

    @property
    def state_key(self) -> str:
        """Checkpoint key of this callback's state: the class and the metric group, so that callbacks of one class
        under different names keep their own."""
        return self._generate_state_key(name=self.name)

    def analyse(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, shard: ProbeShard) -> dict:
        """Attack / solve this process's shard, gather, and log; returns the scalars logged (rank zero) or {}."""
        raise NotImplementedError

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.shard(trainer, "val", pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.shard(trainer, "test", pl_module)

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
        with frozen_eval(pl_module), channels_last(pl_module, self.channels_last), \
                seeded_rng(pl_module.device, self.seed):
            scalars = self.analyse(trainer, pl_module, stage, self.shard(trainer, stage, pl_module))
        if trainer.is_global_zero:
            self.log_scalars(pl_module, stage, {**scalars, "seconds": time.perf_counter() - start})

    def shard(self, trainer: L.Trainer, stage: str, pl_module: L.LightningModule) -> ProbeShard:
        """This process's probe shard for `stage`, read once per dataset (at the stage's start, before any step)
        and kept; `pl_module` is checked against it then (`check_model_fits`: channels, image size, a logit for
        every label), so that a model and data that do not fit stop with both named."""
        dataset = stage_dataset(trainer, stage)
        cached = self._shards.get(stage)
        if cached is not None and cached[0] == id(dataset):
            return cached[1]
        size = FAST_DEV_RUN_PROBE if trainer.fast_dev_run else self.probe_size
        if size > len(dataset):
            rank_zero_warn(f"{type(self).__name__}: probe_size {size} exceeds the {len(dataset)} {stage} images; "
                           "probing all of them")
        indices = seeded_indices(len(dataset), min(size, len(dataset)), self.seed)
        shard = load_shard(dataset, indices, self.batch_size, trainer.global_rank, trainer.world_size)
        check_model_fits(pl_module, shard.x, shard.y, f"{type(self).__name__}'s {stage} probe")
        self._shards[stage] = (id(dataset), shard)
        return shard

    def log_scalars(self, pl_module: L.LightningModule, stage: str, scalars: dict[str, float]) -> None:
        """Log `<stage>/<name>/<key>` from rank zero alone (the values are already global)."""
        for key, value in scalars.items():
            pl_module.log(f"{stage}/{self.name}/{key}", float(value), on_step=False, on_epoch=True,
                          rank_zero_only=True)
