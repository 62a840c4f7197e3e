"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), resized: the embedded default."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def load_digits_tensors(image_size: int = 32, channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as x: (1797, channels, image_size, image_size) float32 in [0, 1], y: (1797,) int64.

    Bilinear upsampling of the 8x8 originals (grey levels 0..16); channels > 1 repeats the grey image.
    """
    from sklearn.datasets import load_digits

    if image_size < 8 or channels not in (1, 3):
        raise ValueError(f"digits need image_size >= 8 and channels 1 or 3, got {image_size} and {channels}")
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x.repeat(1, channels, 1, 1).contiguous(), torch.as_tensor(bunch.target, dtype=torch.int64)
