"""The robustness report flags gradient masking on a model built to mask (a sigmoid MLP whose first-layer scale is
multiplied by 1000, so its units sit in float32's flat sigmoid tails: zero input gradients, Square beats PGD/APGD),
flags softmax outputs, and flags nothing on the plain model; its state round-trips through torch.load."""
from __future__ import annotations

import pytest
import torch
from conftest import accuracy, train_classifier
from torch import nn

from datamodules.digits import load_digits_tensors
from freqmaps.attacks import APGD, PGD, Square
from freqmaps.models import create_model
from freqmaps.robustness import RobustnessReport, robustness_markdown, robustness_report

ATTACKS = {"pgd": PGD(eps=0.1, steps=10, step_size=0.025), "apgd": APGD(eps=0.1, steps=10),
           "square": Square(eps=0.1, queries=100)}


@pytest.fixture(scope="module")
def mlps():
    """A sigmoid MLP on 8x8 digits, its masked twin (same predictions up to rounding), and 128 test digits."""
    x, y = load_digits_tensors(8, 1)
    torch.manual_seed(0)
    plain = train_classifier(create_model("mlp", 10, 1, 8, widths=[64], activation="sigmoid"), x[:1400], y[:1400],
                             epochs=10)
    masked = create_model("mlp", 10, 1, 8, widths=[64], activation="sigmoid").eval()
    masked.load_state_dict(plain.state_dict())
    with torch.no_grad():
        masked.features[1].weight *= 1000
        masked.features[1].bias *= 1000
    return plain, masked, x[1400:1528], y[1400:1528]


def names(report):
    return {flag.name for flag in report.flags}


def test_flags_masking_on_a_masked_model_and_not_on_a_plain_one(mlps, tmp_path):
    plain, masked, x, y = mlps
    assert accuracy(masked, x, y) > 0.8
    report = robustness_report(masked, x, y, ATTACKS, vanilla=plain, progress=False)
    assert {"zero_gradients", "gradient_free_beats_gradient"} <= names(report)
    assert report.attacks == ["pgd", "apgd", "square", "transfer/pgd", "transfer/apgd"]
    assert report.gradient_free == [False, False, True, True, True]
    assert report.worst_case_accuracy <= min(report.accuracy.values())
    assert torch.equal(report.worst, report.robust.all(0)) and not (report.robust & ~report.clean).any()
    clean = robustness_report(plain, x, y, ATTACKS, eps_sweep=[0.02, 0.1, 0.3], sweep_attack="apgd", progress=False)
    assert clean.flags == [] and clean.eps_accuracy[-1] < clean.eps_accuracy[0]
    torch.save(report.state(), tmp_path / "report.pt")
    again = RobustnessReport.from_state(torch.load(tmp_path / "report.pt", weights_only=True))
    assert again.accuracy == report.accuracy and again.flags == report.flags
    assert "zero_gradients" in robustness_markdown(again)


def test_flags_softmax_outputs_and_an_eps_sweep_that_does_not_fall(mlps):
    plain, masked, x, y = mlps
    report = robustness_report(nn.Sequential(plain, nn.Softmax(dim=1)), x[:32], y[:32], {"pgd": ATTACKS["pgd"]},
                               progress=False)
    assert "softmax_outputs" in names(report)
    report = robustness_report(masked, x[:32], y[:32], {"fgsm_like": PGD(eps=0.1, steps=1, random_start=False)},
                               eps_sweep=[0.05, 0.1, 0.2], progress=False)
    assert "eps_does_not_lower_accuracy" in names(report)  # zero gradients: no eps moves the images
