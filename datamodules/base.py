"""What every datamodule shares: train/val/test datasets, dataloaders, the per-device batch size, and the
`num_classes` / `in_channels` / `image_size` that train.py links into the model."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Subset

from freqmaps.errors import UserInputError


class ImageDataModule(L.LightningDataModule):
    """Base class: subclasses set `num_classes`, `in_channels`, `image_size` in `__init__` and implement
    `build_datasets() -> (train, val, test)`, each yielding (image (C, H, W) float in [0, 1], label int).

    `batch_size` is the global batch; under DDP each of the `world_size` processes loads batch_size // world_size.
    """

    num_classes: int
    in_channels: int
    image_size: int

    def __init__(self, batch_size: int = 64, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise UserInputError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise UserInputError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._shuffle = torch.Generator().manual_seed(seed)  # the training order's stream, saved in checkpoints
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    @property
    def per_device_batch_size(self) -> int:
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if self.batch_size % world_size != 0:
            raise UserInputError(
                f"data.batch_size={self.batch_size} is not divisible by the {world_size} processes; "
                "choose a multiple of the number of devices"
            )
        return self.batch_size // world_size

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.build_datasets()

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.per_device_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=self._shuffle if shuffle else None,
        )

    def state_dict(self) -> dict:
        """Saved in every checkpoint: the state of the training order's generator, so that a run resumed from a
        checkpoint takes the next epochs in the order the uninterrupted run took them."""
        return {"shuffle_generator": self._shuffle.get_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "shuffle_generator" in state_dict:
            self._shuffle.set_state(state_dict["shuffle_generator"])

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)


def split_indices(n: int, holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """A fixed seeded permutation of range(n) cut into (n - holdout, holdout) index lists."""
    if not 0 < holdout < n:
        raise UserInputError(f"a held-out split of {holdout} images out of {n} is impossible; choose 0 < size < {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[holdout:], order[:holdout]


def seeded_split(dataset: Dataset, holdout: int, seed: int, holdout_view: Dataset | None = None) -> tuple[Subset, Subset]:
    """Split `dataset` into (rest, held out); the held-out part may come from `holdout_view`, the same images
    with other transforms (for example without augmentation)."""
    rest, held = split_indices(len(dataset), holdout, seed)
    return Subset(dataset, rest), Subset(holdout_view if holdout_view is not None else dataset, held)


def require_image_folder(root: Path, splits: tuple[str, ...], dataset: str, extra: str = "") -> None:
    """Raise a UserInputError naming `root` and the expected layout unless root/<split>/<class>/ images exist."""
    expected = ", ".join(f"{root}/{s}/<class>/*.jpg" for s in splits)
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            raise UserInputError(f"{dataset}: no folder {folder}. Expected the layout {expected}.{extra}")
        classes = [p for p in folder.iterdir() if p.is_dir()]
        if not classes or not any(any(c.iterdir()) for c in classes):
            raise UserInputError(
                f"{dataset}: {folder} holds no class folders with images. Expected the layout {expected}.{extra}"
            )


def undecodable(path: str | Path, error: BaseException) -> UserInputError:
    """The error for an image file that does not decode: its path, the decoder's first line, what to do."""
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
    return UserInputError(f"{path} does not decode as an image ({reason}); remove or replace it")


def open_rgb(path: str) -> Image.Image:
    """ImageFolder's loader (an RGB PIL image), with a file that does not decode, met mid-epoch by a streaming
    loader, reported by `undecodable` instead of PIL's traceback from a loader worker."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise undecodable(path, error) from None
