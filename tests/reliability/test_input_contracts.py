"""Incompatible inputs stop with a reason instead of giving results: NaN pixels, a model analysed on data of
another shape, labels beyond the model's classes, out-of-range counts, an unwritable output folder (found
before any compute)."""
from __future__ import annotations

import pytest
import torch

from analyze import analyze
from datamodules import DigitsDataModule
from freqmaps.attacks import PGD
from freqmaps.errors import UserInputError
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
                output_dir=tmp_path / "out", images=8, wandb_project=None, progress=False)
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
    monkeypatch.setattr("analyze.load_classifier", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises(UserInputError, match="output_dir .*a_file/out is not writable"):
        run(tmp_path, checkpoint="digits_small_cnn", output_dir=tmp_path / "a_file" / "out")
