"""Incompatible inputs stop with a reason instead of giving results: NaN pixels, a model analysed on data of
another shape, labels beyond the model's classes, out-of-range counts, an unwritable output folder (found
before any compute)."""
from __future__ import annotations

import sys

import pytest
import torch

from analyze import analyze
from datamodules import DigitsDataModule
from freqmaps.attacks import PGD
from freqmaps.errors import UserInputError, one_line, user_error
from freqmaps.inputs import check_model_fits
from freqmaps.maps import essential_maps
from freqmaps.zoo import load_model


def test_nan_pixels_are_rejected_by_solver_and_attack(tiny):
    model, x, y = tiny
    bad = x.clone()
    bad[2, 0, 3, 3] = float("nan")
    with pytest.raises(UserInputError, match=r"NaN or infinite pixels \(images \[2\] of 6\)"):
        essential_maps(model, bad, y, progress=False)
    bad[2, 0, 3, 3] = float("inf")
    with pytest.raises(UserInputError, match="NaN or infinite"):
        PGD(eps=0.1, steps=2)(model, bad, y)


@pytest.mark.parametrize("run", ["maps", "PGD", "FMN", "DeepFool"])
def test_labels_beyond_the_models_classes_are_refused(tiny, run):
    """`tiny` has 3 classes; label 7 is an IndexError inside cross-entropy (PGD, FMN, the solver) or, for
    DeepFool, which only compares labels with predictions, a silent "success" without the check."""
    from freqmaps.attacks import FMN, DeepFool

    model, x, y = tiny
    y = y.clone()
    y[1] = 7
    attacks = {"PGD": PGD(eps=0.1, steps=2), "FMN": FMN(norm="linf", steps=3), "DeepFool": DeepFool(steps=3)}
    with pytest.raises(UserInputError, match="has labels 0..7, the model gives 3 classes"):
        if run == "maps":
            essential_maps(model, x, y, progress=False)
        else:
            attacks[run](model, x, y)


def test_model_and_data_must_fit():
    digits = load_model("digits_small_cnn")
    x = torch.rand(4, 1, 32, 32)
    check_model_fits(digits, x, torch.tensor([0, 3, 9, 1]))  # fits: no error
    with pytest.raises(UserInputError, match="labels 0..12, the model gives 10 classes"):
        check_model_fits(digits, x, torch.tensor([0, 12, 3, 1]))
    with pytest.raises(UserInputError, match="takes 3-channel images, the digits has 1 channels"):
        check_model_fits(load_model("cifar10_resnet20"), x, torch.zeros(4, dtype=torch.long), "the digits")


def run(tmp_path, **changes):
    args = dict(checkpoint="cifar10_resnet20", data=DigitsDataModule(), attacks=[PGD(eps=0.03, steps=2)],
                output_dir=tmp_path / "out", images=8, resamples=0, power_simulations=0, wandb_project=None,
                progress=False)
    return analyze(**{**args, **changes})


@pytest.mark.parametrize("changes, message", [
    ({}, "takes 3-channel images, DigitsDataModule's test split has 1 channels"),
    ({"checkpoint": "digits_small_cnn", "images": 0}, "images must be >= 1, got 0"),
    ({"checkpoint": "digits_small_cnn", "images": -5}, "images must be >= 1, got -5"),
    ({"checkpoint": "digits_small_cnn", "permutations": -1}, "permutations must be >= 0"),
])
def test_analyze_refuses_what_does_not_fit(tmp_path, changes, message):
    with pytest.raises(UserInputError, match=message):
        run(tmp_path, **changes)
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_unwritable_output_folder_is_found_before_any_compute(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr("analyze.load_probe", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises(UserInputError, match="output_dir .*a_file/out is not writable"):
        run(tmp_path, checkpoint="digits_small_cnn", output_dir=tmp_path / "a_file" / "out")


def image_folder(root, size: int, corrupt: bool = False):
    """train/ and test/ with 10 class folders of 2 random JPEGs each (size x size); with corrupt, one train
    file holds text instead."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = (torch.rand(size, size, 3, generator=g) * 255).byte().numpy()
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    if corrupt:
        (root / "train" / "class3" / "1.jpg").write_text("not a JPEG")
    return root


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_folder_of_other_sized_images_is_not_cifar10(tmp_path, in_memory):
    from datamodules import CIFAR10DataModule

    data = CIFAR10DataModule(root=str(image_folder(tmp_path, 64)), val_size=2, in_memory=in_memory)
    with pytest.raises(UserInputError, match=r"is 64x64 pixels, .*32x32"):
        data.setup("fit")


def test_a_corrupt_image_is_named(tmp_path):
    from datamodules import CIFAR10DataModule

    data = CIFAR10DataModule(root=str(image_folder(tmp_path, 32, corrupt=True)), val_size=2, in_memory=True)
    with pytest.raises(UserInputError, match=r"class3/1\.jpg does not decode as an image"):
        data.setup("fit")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_corrupt_image_met_mid_epoch_is_named(tmp_path, num_workers):
    """The streaming loader (images decoded as batches are drawn) meets the file during the epoch; from a loader
    worker the error comes back wrapped in the worker's traceback, and the one-line message is the original."""
    from datamodules import CIFAR10DataModule

    data = CIFAR10DataModule(root=str(image_folder(tmp_path, 32, corrupt=True)), val_size=2, in_memory=False,
                             batch_size=4, num_workers=num_workers)
    data.setup("fit")
    with pytest.raises(UserInputError) as caught:
        for _ in data.train_dataloader():
            pass
    message = one_line(user_error(caught.value))
    assert message.startswith(str(tmp_path / "train" / "class3" / "1.jpg")) and message.endswith("replace it")


def test_a_probe_callback_checks_the_model_against_its_data():
    """A 3-channel model validated on 1-channel digits: the callback stops the run before the first step, naming
    both (without it, the model's own forward would fail with a raw shape error)."""
    import lightning as L

    from callbacks import RobustAccuracyCallback
    from lightning_modules import StandardClassifier

    data = DigitsDataModule(batch_size=16)
    model = StandardClassifier(in_channels=3, num_classes=10, image_size=data.image_size)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[RobustAccuracyCallback(probe_size=8, batch_size=8)])
    with pytest.raises(UserInputError, match=r"takes 3-channel images, RobustAccuracyCallback's val probe has 1 "):
        trainer.validate(model, datamodule=data)


def test_train_py_finds_an_unwritable_output_folder_before_building_anything(tmp_path, monkeypatch):
    from train import main

    (tmp_path / "a_file").write_text("")
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.setattr("datamodules.DigitsDataModule.setup", lambda *a, **k: pytest.fail("data set up"))
    with pytest.raises(UserInputError, match=r"trainer.default_root_dir .*a_file/out is not writable \(Not a dir"):
        main(["fit", "--trainer.default_root_dir", str(tmp_path / "a_file" / "out")])
