"""MNIST through torchvision (downloaded into `root` when `download` is true)."""
from __future__ import annotations

from pathlib import Path

from torchvision import transforms as T
from torchvision.datasets import MNIST

from datamodules.base import ImageDataModule, seeded_split
from freqmaps.errors import UserInputError


class MNISTDataModule(ImageDataModule):
    """60,000 train images minus `val_size` held out (seeded), 10,000 test images.

    Batches: x (B, 1, image_size, image_size) in [0, 1] (resized from 28x28 when image_size != 28), y (B,) in 0..9.
    """

    def __init__(
        self,
        root: str = "data/mnist",
        download: bool = False,
        image_size: int = 28,
        val_size: int = 5000,
        batch_size: int = 128,
        num_workers: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.num_classes, self.in_channels, self.image_size = 10, 1, image_size
        self.root, self.download, self.val_size = Path(root), download, val_size
        resize = [T.Resize(image_size)] if image_size != 28 else []
        self.transform = T.Compose([*resize, T.ToTensor()])
        if not download and not (self.root / "MNIST" / "raw").is_dir():
            raise UserInputError(
                f"MNISTDataModule: no MNIST under {self.root}. Expected torchvision's layout "
                f"{self.root}/MNIST/raw/*-ubyte; set data.download=true to fetch it, or data.root to where it is"
            )

    def prepare_data(self) -> None:
        if self.download:
            for train in (True, False):
                MNIST(str(self.root), train=train, download=True)

    def _dataset(self, train: bool) -> MNIST:
        return MNIST(str(self.root), train=train, transform=self.transform)

    def build_datasets(self):
        train, val = seeded_split(self._dataset(True), self.val_size, self.seed)
        return train, val, self._dataset(False)
