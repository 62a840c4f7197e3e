"""Imagenette (the 10 easy ImageNet classes) from an image folder `root/{train,val}/<class>/*.JPEG`."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from datamodules.base import ImageDataModule, open_rgb, require_image_folder, seeded_split
from freqmaps.errors import UserInputError


class ImagenetteDataModule(ImageDataModule):
    """Training images minus `val_size` held out (seeded) for validation; the `val` folder is the test set.

    Batches: x (B, 3, image_size, image_size) in [0, 1], y (B,) in 0..num_classes-1 (class folders in sorted order).
    transform "crop": training random resized crop and horizontal flip, evaluation resize to image_size * 8/7
    and centre crop (torchvision's ImageNet recipe); "paper": every image resized to image_size x image_size,
    no augmentation (the paper's code). Images are read as batches are drawn; a file that does not decode stops
    the run with its path. `datamodules.imagenette_standin` builds a 224-px stand-in folder from CIFAR-10.
    """

    def __init__(
        self,
        root: str = "data/imagenette2",
        image_size: int = 224,
        val_size: int = 500,
        batch_size: int = 64,
        num_workers: int = 2,
        seed: int = 0,
        transform: Literal["crop", "paper"] = "crop",
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.root = Path(root)
        self.in_channels, self.image_size, self.val_size = 3, image_size, val_size
        if transform == "paper":
            self.train_transform = self.eval_transform = T.Compose([T.Resize((image_size, image_size)), T.ToTensor()])
        elif transform == "crop":
            self.train_transform = T.Compose(
                [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor()]
            )
            self.eval_transform = T.Compose([T.Resize(image_size * 8 // 7), T.CenterCrop(image_size), T.ToTensor()])
        else:
            raise UserInputError(f"ImagenetteDataModule: transform must be 'crop' or 'paper', got {transform!r}")
        require_image_folder(self.root, ("train", "val"), "ImagenetteDataModule",
                             " Imagenette is at https://github.com/fastai/imagenette (imagenette2-320.tgz unpacks"
                             " to this layout); `python -m datamodules.imagenette_standin` builds a stand-in.")
        self.num_classes = sum(1 for p in (self.root / "train").iterdir() if p.is_dir())

    def build_datasets(self):
        folder = str(self.root / "train")
        train, val = seeded_split(
            ImageFolder(folder, transform=self.train_transform, loader=open_rgb), self.val_size, self.seed,
            holdout_view=ImageFolder(folder, transform=self.eval_transform, loader=open_rgb),
        )
        return train, val, ImageFolder(str(self.root / "val"), transform=self.eval_transform, loader=open_rgb)
