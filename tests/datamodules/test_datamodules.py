"""Every datamodule yields (B, C, H, W) batches in [0, 1] with the right labels; bad roots give clear errors."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import (
    CIFAR10DataModule,
    DigitsDataModule,
    ImagenetteDataModule,
    MNISTDataModule,
    SyntheticFrequencyDataModule,
)
from datamodules.digits import load_digits_tensors
from freqmaps.errors import UserInputError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def first_batch(dm, loader: str = "train_dataloader"):
    dm.setup("fit")
    return next(iter(getattr(dm, loader)()))


def check_batch(x, y, shape, num_classes):
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == shape
    assert x.min() >= 0 and x.max() <= 1 and x.max() > x.min()
    assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < num_classes


def test_digits_batches_carry_the_right_labels():
    dm = DigitsDataModule(image_size=32, channels=3, batch_size=50)
    x, y = first_batch(dm)
    check_batch(x, y, (3, 32, 32), 10)
    all_x, all_y = load_digits_tensors(32, 3)
    matches = (x[:, None] == all_x[None]).flatten(2).all(-1)  # (50, 1797): which digit each image is
    assert matches.any(1).all()
    assert (all_y[matches.float().argmax(1)] == y).all()
    assert [len(s) for s in (dm.train_set, dm.val_set, dm.test_set)] == [1797 - 180 - 360, 180, 360]


def test_digits_split_is_fixed_by_seed():
    a, b, c = (DigitsDataModule(seed=s) for s in (0, 0, 1))
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.test_set.tensors[0], b.test_set.tensors[0])
    assert not torch.equal(a.test_set.tensors[0], c.test_set.tensors[0])


def test_synthetic_labels_match_planted_frequencies():
    dm = SyntheticFrequencyDataModule(num_train=256, num_val=64, num_test=64, batch_size=256)
    x, y = first_batch(dm)
    check_batch(x, y, (1, 32, 32), 4)
    power = torch.fft.fftshift(torch.fft.fft2(x[:, 0]), dim=(-2, -1)).abs()  # (B, 32, 32)
    score = torch.einsum("bhw,chw->bc", power, dm.planted.float())  # energy on each class's frequencies
    assert (score.argmax(1) == y).float().mean() == 1.0


def test_cifar10_image_folder(cifar10_few):
    dm = CIFAR10DataModule(root=str(cifar10_few), val_size=20, batch_size=16, num_workers=0)
    x, y = first_batch(dm)
    check_batch(x, y, (3, 32, 32), 10)
    dm.setup()
    test = dm.test_set
    assert test.classes == CIFAR10_CLASSES
    assert all(CIFAR10_CLASSES[label] == Path(path).parent.name for path, label in test.samples)
    x_val, _ = next(iter(dm.val_dataloader()))
    assert torch.equal(x_val, next(iter(dm.val_dataloader()))[0])  # no augmentation outside training
    augmented = torch.stack([dm.train_set[0][0] for _ in range(8)])
    assert (augmented != augmented[0]).any()  # crop / flip change the training image


def write_color_folder(root: Path, splits=("train", "val"), per_class: int = 6, size: int = 48) -> list[str]:
    """Classes red / green / blue as noisy JPEGs: the label is readable from the dominant channel."""
    classes = ["blue", "green", "red"]
    rng = np.random.default_rng(0)
    for split in splits:
        for channel, name in ((2, "blue"), (1, "green"), (0, "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[..., channel] = 200
                Image.fromarray(img).save(folder / f"{i}.JPEG")
    return classes


def test_imagenette_image_folder(tmp_path):
    classes = write_color_folder(tmp_path)
    dm = ImagenetteDataModule(root=str(tmp_path), image_size=32, val_size=4, batch_size=8, num_workers=0)
    assert dm.num_classes == 3
    for loader in ("train_dataloader", "test_dataloader"):
        x, y = first_batch(dm, loader)
        check_batch(x, y, (3, 32, 32), 3)
        dominant = x.mean((2, 3)).argmax(1)  # 0 red, 1 green, 2 blue
        assert [classes[i] for i in y] == [["red", "green", "blue"][i] for i in dominant]


def write_mnist_raw(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's MNIST raw files (IDX format) holding 28x28 digits: the offline stand-in for a download."""
    x, y = load_digits_tensors(28, 1)
    images = (x[:, 0] * 255).round().to(torch.uint8).numpy()
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, sl in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        imgs, labels = images[sl], y[sl].numpy().astype(np.uint8)
        header = np.array([2051, len(imgs), 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(np.array([2049, len(labels)], dtype=">i4").tobytes()
                                                          + labels.tobytes())
    return torch.as_tensor(images), y


def test_mnist_reads_torchvision_layout(tmp_path):
    images, labels = write_mnist_raw(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), val_size=100, batch_size=32, num_workers=0)
    x, y = first_batch(dm, "test_dataloader")
    check_batch(x, y, (1, 28, 28), 10)
    assert torch.equal((x[:, 0] * 255).round().to(torch.uint8), images[1500:1532])
    assert torch.equal(y, labels[1500:1532])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: CIFAR10DataModule(root=str(root)), "no CIFAR-10 under"),
        (lambda root: ImagenetteDataModule(root=str(root)), "ImagenetteDataModule: no folder"),
        (lambda root: MNISTDataModule(root=str(root)), "MNISTDataModule: no MNIST under"),
    ],
)
def test_missing_roots_name_path_and_layout(tmp_path, make, message):
    with pytest.raises(UserInputError, match=message) as err:
        make(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value)


def test_malformed_image_folder(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(UserInputError, match="holds no class folders with images"):
        CIFAR10DataModule(root=str(tmp_path))


def test_global_batch_is_split_across_processes():
    dm = DigitsDataModule(batch_size=64)
    dm.trainer = SimpleNamespace(world_size=4)
    assert dm.per_device_batch_size == 16
    dm.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(UserInputError, match="not divisible"):
        dm.per_device_batch_size


def test_missing_imagenette_names_the_layout_and_the_download_page(tmp_path):
    with pytest.raises(UserInputError) as err:
        ImagenetteDataModule(root=str(tmp_path / "imagenette2-320"))
    message = str(err.value)
    assert f"{tmp_path}/imagenette2-320/train/<class>/*.jpg" in message and "/val/<class>/" in message
    assert "https://github.com/fastai/imagenette" in message and "datamodules.imagenette_standin" in message


def test_the_standin_is_cifar10_upscaled_in_imagenettes_layout(cifar10_few, tmp_path):
    from datamodules.imagenette_standin import build_standin

    written = build_standin(cifar10_few, tmp_path / "standin", size=224, train_per_class=3, val_per_class=2,
                            progress=False)
    assert written == {"train": 30, "val": 20}
    assert "Not Imagenette" in (tmp_path / "standin" / "STANDIN.txt").read_text()
    dm = ImagenetteDataModule(root=str(tmp_path / "standin"), val_size=5, batch_size=8, num_workers=0,
                              transform="paper")
    dm.setup("fit")
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 224, 224) and dm.num_classes == 10
    source = sorted((cifar10_few / "test" / "airplane").iterdir())[0]
    small = torch.from_numpy(np.array(Image.open(source).convert("RGB"))).permute(2, 0, 1).float() / 255
    # the upscaled image, averaged back over 7x7 blocks, is the CIFAR-10 image up to JPEG and bicubic rounding
    blocks = torch.nn.functional.avg_pool2d(x[0:1], 7)[0]
    assert (blocks - small).abs().mean() < 0.03
    with pytest.raises(UserInputError, match="exists; give a new folder"):
        build_standin(cifar10_few, tmp_path / "standin")
