"""Shared fixtures: small real models trained in seconds on real data (digits) and on the
planted-frequency oracle. Session-scoped so the whole suite trains each once."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.digits import load_digits_tensors
from freqmaps.models import SmallCNN
from freqmaps.synthetic import PlantedFrequencyData, planted_frequency_images


def train_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int = 8, batch_size: int = 64, lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Plain Adam training loop; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@dataclass
class Trained:
    """A trained model (eval mode) with its held-out data: x_test (n, C, H, W) in [0, 1], y_test (n,)."""

    model: nn.Module
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_accuracy: float


@pytest.fixture(scope="session")
def digits_cnn() -> Trained:
    """SmallCNN on 32x32 digits: 1,400 train / 397 test images, about 98% test accuracy."""
    x, y = load_digits_tensors(32, 1)
    torch.manual_seed(0)  # the initial weights, independent of which tests ran before
    model = train_classifier(SmallCNN(10, 1), x[:1400], y[:1400], epochs=8)
    return Trained(model, x[1400:], y[1400:], accuracy(model, x[1400:], y[1400:]))


@pytest.fixture(scope="session")
def synthetic_data() -> tuple[PlantedFrequencyData, PlantedFrequencyData]:
    """Planted-frequency train (2,000) and test (400) images: 4 classes, 1 channel, 32x32, same frequencies."""
    return planted_frequency_images(2000, seed=1), planted_frequency_images(400, seed=2)


@pytest.fixture(scope="session")
def synthetic_cnn(synthetic_data) -> Trained:
    """SmallCNN trained on the planted-frequency data."""
    train, test = synthetic_data
    torch.manual_seed(0)  # the initial weights, independent of which tests ran before
    model = train_classifier(SmallCNN(4, 1), train.x, train.y, epochs=6)
    return Trained(model, test.x, test.y, accuracy(model, test.x, test.y))


@pytest.fixture(autouse=True, scope="session")
def _quiet_offline_wandb():
    """W&B in tests: offline, quiet, and no run left open between tests."""
    import os

    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_MODE", "offline")
    yield
    wandb.finish()


@pytest.fixture(scope="session")
def cifar10_few(tmp_path_factory):
    """A small real CIFAR-10 image folder (the first 12 train and 4 test JPEGs of each class) copied from
    $FREQMAPS_CIFAR10: a CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg) or a .tar.gz of one."""
    import os
    import shutil
    import tarfile
    from collections import Counter
    from pathlib import Path

    from benchmarks.common import CIFAR10_ENV

    if not os.environ.get(CIFAR10_ENV):
        pytest.skip(f"needs CIFAR-10: set {CIFAR10_ENV} to an image folder (train/<class>/*.jpg, "
                    "test/<class>/*.jpg) or to a .tar.gz of one")
    source = Path(os.environ[CIFAR10_ENV]).expanduser()
    root = tmp_path_factory.mktemp("cifar10")
    quota, taken = {"train": 12, "test": 4}, Counter()
    if source.is_dir():
        for split, n in quota.items():
            for folder in sorted((source / split).glob("*/")):
                (root / split / folder.name).mkdir(parents=True)
                for image in sorted(folder.iterdir())[:n]:
                    shutil.copyfile(image, root / split / folder.name / image.name)
                    taken[split, folder.name] += 1
    elif not source.is_file():
        raise FileNotFoundError(f"{CIFAR10_ENV}={source}: no such folder or file")
    else:
        with tarfile.open(source) as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) >= 3 and parts[-3] in quota:
                    key = (parts[-3], parts[-2])
                    if taken[key] < quota[parts[-3]]:
                        taken[key] += 1
                        target = root / parts[-3] / parts[-2] / parts[-1]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar.extractfile(member).read())
                if len(taken) == 20 and all(taken[k] >= quota[k[0]] for k in taken):
                    break
    if {split for split, _ in taken} != set(quota):
        raise FileNotFoundError(f"{CIFAR10_ENV}={source} holds no train/<class>/*.jpg and test/<class>/*.jpg")
    return root


@pytest.fixture(scope="session")
def imagenette_tiny(tmp_path_factory):
    """A generated image folder in Imagenette's layout: 3 classes, 4 train and 1 val 224-px JPEGs each (each
    class a different mean colour plus noise)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenette")
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 4), ("val", 1)):
        for k, name in enumerate(("n01440764", "n02102040", "n02979186")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = (torch.rand(224, 224, 3, generator=generator) * 0.5 + 0.25 * k).clamp(0, 1)
                Image.fromarray((pixels * 255).byte().numpy()).save(root / split / name / f"{i}.JPEG")
    return root


@pytest.fixture(scope="session")
def tiny():
    """A BatchNorm-free conv net in float64 and 6 one-channel 16x16 images with its labels (several classes)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 3)).double().eval()
    x = torch.rand(6, 1, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        model[-1].bias -= model(x).mean(0)  # centre the logits over the batch, so the images get different labels
        y = model(x).argmax(1)
    assert len(y.unique()) > 1
    return model, x, y
