"""CIFAR-10: torchvision's download (`download=True`), or an image folder `root/{train,test}/<class>/*.jpg`
(such as a JPEG copy of CIFAR-10 extracted from a .tar.gz)."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets import CIFAR10, ImageFolder

from datamodules.base import ImageDataModule, open_rgb, require_image_folder, seeded_split, split_indices
from datamodules.in_memory import InMemoryImages, decode_folder
from freqmaps.errors import UserInputError


class CIFAR10DataModule(ImageDataModule):
    """50,000 train images (minus `val_size` held out for validation, seeded) and 10,000 test images.

    Batches: x (B, 3, 32, 32) in [0, 1] (no normalisation: the model normalises inside), y (B,) in 0..9.
    Augmentation of the training images only: random crop with 4-pixel zero padding, horizontal flip.
    `in_memory`: decode every image once into a uint8 tensor (150 MB) and augment tensors in the main process,
    instead of decoding JPEGs in loader workers each epoch; set `num_workers: 0` with it.
    """

    def __init__(
        self,
        root: str = "data/cifar10",
        download: bool = False,
        random_crop: bool = True,
        horizontal_flip: bool = True,
        val_size: int = 5000,
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int = 0,
        in_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.num_classes, self.in_channels, self.image_size = 10, 3, 32
        self.root, self.download, self.val_size = Path(root), download, val_size
        self.in_memory, self.random_crop, self.horizontal_flip = in_memory, random_crop, horizontal_flip
        augment = ([T.RandomCrop(32, padding=4)] if random_crop else []) + (
            [T.RandomHorizontalFlip()] if horizontal_flip else []
        )
        self.train_transform = T.Compose([*augment, T.ToTensor()])
        self.eval_transform = T.ToTensor()
        self.image_folder = (self.root / "train").is_dir() or (self.root / "test").is_dir()
        if self.image_folder:
            require_image_folder(self.root, ("train", "test"), "CIFAR10DataModule")
        elif not download and not (self.root / "cifar-10-batches-py").is_dir():
            raise UserInputError(
                f"CIFAR10DataModule: no CIFAR-10 under {self.root}. Expected either an image folder "
                f"{self.root}/train/<class>/*.jpg and {self.root}/test/<class>/*.jpg, or torchvision's "
                f"{self.root}/cifar-10-batches-py; set data.download=true to fetch it, or data.root to where it is"
            )

    def prepare_data(self) -> None:
        if self.download and not self.image_folder:
            for train in (True, False):
                CIFAR10(str(self.root), train=train, download=True)

    def _dataset(self, split: str, transform):
        if not self.image_folder:
            return CIFAR10(str(self.root), train=split == "train", transform=transform)
        dataset = ImageFolder(str(self.root / split), transform=transform, loader=open_rgb)
        if len(dataset.classes) != 10:
            raise UserInputError(
                f"CIFAR10DataModule: {self.root / split} has {len(dataset.classes)} class folders, expected 10"
            )
        first = dataset.samples[0][0]  # ImageFolder refuses a folder without images
        with Image.open(first) as image:  # the first image stands for the folder: a cheap check of the layout
            if image.size != (self.image_size, self.image_size):
                raise UserInputError(f"CIFAR10DataModule: {first} is {image.size[0]}x{image.size[1]} pixels, CIFAR-10 "
                                     f"images are {self.image_size}x{self.image_size}: is {self.root} a CIFAR-10 folder?")
        return dataset

    def _tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All images of `split` as (N, 3, 32, 32) uint8 and labels (N,) int64."""
        dataset = self._dataset(split, None)
        if self.image_folder:
            return decode_folder(dataset.samples, f"decoding {self.root / split}", self.image_size)
        return torch.as_tensor(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(dataset.targets)

    def build_datasets(self):
        if self.in_memory:
            images, labels = self._tensors("train")
            rest, held = split_indices(len(labels), self.val_size, self.seed)
            padding = 4 if self.random_crop else 0
            train = InMemoryImages(images[rest], labels[rest], padding, self.horizontal_flip)
            return train, InMemoryImages(images[held], labels[held]), InMemoryImages(*self._tensors("test"))
        train, val = seeded_split(
            self._dataset("train", self.train_transform), self.val_size, self.seed,
            holdout_view=self._dataset("train", self.eval_transform),
        )
        return train, val, self._dataset("test", self.eval_transform)
