"""Decoded images held in memory as uint8, augmented per sample on tensors: no JPEG decoding per epoch and no
loader workers competing with training for the CPU cores."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, read_file
from tqdm import tqdm


def decode_folder(samples: list[tuple[str, int]], desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageFolder-style (path, label) pairs -> images (N, 3, H, W) uint8 and labels (N,) int64."""
    images = [decode_image(read_file(path), mode=ImageReadMode.RGB) for path, _ in tqdm(samples, desc=desc, leave=False)]
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
