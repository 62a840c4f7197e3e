"""Decoded images held in memory as uint8, augmented per sample on tensors: no JPEG decoding per epoch and no
loader workers competing with training for the CPU cores."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from tqdm import tqdm

from datamodules.base import undecodable
from freqmaps.errors import UserInputError


def decode_folder(samples: list[tuple[str, int]], desc: str,
                  size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageFolder-style (path, label) pairs -> images (N, 3, H, W) uint8 and labels (N,) int64. A file that
    does not decode, or (with `size`) an image that is not size x size, raises a UserInputError naming it."""
    images = []
    for path, _ in tqdm(samples, desc=desc, leave=False):
        try:
            image = decode_image(read_file(path), mode=ImageReadMode.RGB)
        except RuntimeError as error:
            raise undecodable(path, error) from None
        if size is not None and tuple(image.shape[-2:]) != (size, size):
            raise UserInputError(f"{path} is {image.shape[-1]}x{image.shape[-2]} pixels, this dataset's images are "
                                 f"{size}x{size}: is this the right folder?")
        images.append(image)
    if len({tuple(image.shape) for image in images}) > 1:
        raise UserInputError(f"{desc}: the images differ in size; give images of one size")
    return torch.stack(images), torch.tensor([label for _, label in samples], dtype=torch.int64)


class InMemoryImages(Dataset):
    """images: (N, C, H, W) uint8, labels: (N,) -> (image (C, H, W) float32 in [0, 1], label int).

    Training augmentation, per sample: a random crop after zero-padding by `crop_padding` pixels (0: none) and a
    horizontal flip with probability 0.5 (`flip`). The draws use torch's global generator, which Lightning seeds.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop_padding: int = 0, flip: bool = False) -> None:
        self.images, self.labels = images, labels
        self.crop_padding, self.flip = crop_padding, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.crop_padding:
            p = self.crop_padding
            h, w = image.shape[-2:]
            top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
            image = F.pad(image, (p, p, p, p))[:, top : top + h, left : left + w]
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image.float().div_(255), int(self.labels[index])
