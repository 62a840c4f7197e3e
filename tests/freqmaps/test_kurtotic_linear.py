"""The linear kurtosis demonstration (freqmaps.kurtotic_linear): the project's FGSM lowers a two-class linear margin by
exactly eps·‖w_y − w_o‖₁; the exact worst-case accuracy is the optimum of each class pair's linear program (scipy)
and bounds FGSM's; the FISTA fits reach scikit-learn's optima; on two digit classes the kurtotic model, at the
Gaussian model's clean accuracy, has the higher kurtosis (scipy as the oracle), the lower ‖W‖₁/‖W‖_F and the higher
FGSM accuracy; the study writes its folder through analyze.py."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from scipy.optimize import linprog
from sklearn.linear_model import LogisticRegression

import analyze
from datamodules.digits import load_digits_tensors
from freqmaps.attacks import FGSM
from freqmaps.errors import UserInputError
from freqmaps.kurtotic_linear import (
    exact_robust_accuracy,
    fgsm_accuracy,
    fit_linear,
    kurtotic_linear,
    linear_classifier,
)
from studies.kurtotic_linear import keep_classes, kurtotic_linear_study, write_results

CONFIG = "configs/analysis/digits_kurtotic_linear.yaml"


def test_fgsm_lowers_a_two_class_linear_margin_by_eps_times_the_l1_norm():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(2, 16, generator=g), 0.1 * torch.randn(2, generator=g)
    x = 0.3 + 0.4 * torch.rand(64, 1, 4, 4, generator=g)  # inside [0.3, 0.7]: FGSM at eps 0.05 never clips
    model = linear_classifier(weight, bias)
    with torch.no_grad():
        y = model(x).argmax(1)
    diff = weight[y] - weight[1 - y]

    def margin(images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1) * diff).sum(1) + bias[y] - bias[1 - y]

    eps = 0.05
    drop = margin(x) - margin(FGSM(eps=eps)(model, x, y))
    torch.testing.assert_close(drop, eps * diff.abs().sum(1), rtol=1e-5, atol=1e-5)


def test_exact_robust_accuracy_is_the_linear_program_optimum_and_bounds_fgsm():
    g = torch.Generator().manual_seed(1)
    classes, d, n, eps = 4, 12, 40, 0.15
    weight, bias = torch.randn(classes, d, generator=g), 0.2 * torch.randn(classes, generator=g)
    x = torch.rand(n, 1, 3, 4, generator=g)
    x[:, :, 0] = 0.0  # pixels on the box's faces: the room to move shrinks there
    x[:, :, 1, :2] = 1.0
    with torch.no_grad():
        y = (x.flatten(1) @ weight.T + bias).argmax(1)
    y[:5] = (y[:5] + 1) % classes  # a few images misclassified clean
    pixels, logits = x.flatten(1).double(), (x.flatten(1) @ weight.T + bias).double()
    robust = []
    for i in range(n):
        ok = bool(logits[i].argmax() == y[i])
        for k in range(classes):
            if k != y[i] and ok:
                c = (weight[y[i]] - weight[k]).double().numpy()
                bounds = [(max(-eps, -p), min(eps, 1 - p)) for p in pixels[i].tolist()]
                worst = linprog(c, bounds=bounds, method="highs").fun + float(logits[i, y[i]] - logits[i, k])
                ok = worst > 0
        robust.append(ok)
    exact = exact_robust_accuracy(weight, bias, x, y, eps)
    assert exact == pytest.approx(sum(robust) / n, abs=1e-6)  # one image is 1/40
    assert 0 < exact < 35 / 40  # neither all nor none: the test can fail either way
    assert fgsm_accuracy(linear_classifier(weight, bias), x, y, eps) >= exact
    two = y < 2  # two classes: FGSM is the optimal L-inf attack of a linear model
    w2, b2 = weight[:2], bias[:2]
    x2, y2 = x[two], (x[two].flatten(1) @ w2.T + b2).argmax(1)
    assert fgsm_accuracy(linear_classifier(w2, b2), x2, y2, eps) == exact_robust_accuracy(w2, b2, x2, y2, eps)


def penalised_objective(weight, bias, x, y, penalty, strength) -> float:
    w, b = torch.as_tensor(weight, dtype=torch.float64), torch.as_tensor(bias, dtype=torch.float64)
    ce = F.cross_entropy(x.flatten(1).double() @ w.T + b, y)
    return (ce + strength * (w.pow(2).sum() if penalty == "l2" else w.abs().sum())).item()


@pytest.mark.parametrize("penalty, strength", [("l2", 1e-2), ("l1", 1e-2)])
def test_fit_linear_reaches_the_optimum_scikit_learn_finds(penalty, strength):
    x, y = load_digits_tensors(8, 1)
    x, y = x[:400], y[:400]
    fit = fit_linear(x, y, 10, penalty, strength)
    n = len(x)  # scikit-learn minimises C·Σ CE + ½‖W‖² (L2) or C·Σ CE + ‖W‖₁ (L1)
    reference = LogisticRegression(C=1 / (2 * n * strength) if penalty == "l2" else 1 / (n * strength),
                                   l1_ratio=0.0 if penalty == "l2" else 1.0,
                                   solver="lbfgs" if penalty == "l2" else "saga", tol=1e-7, max_iter=3000)
    reference.fit(x.flatten(1).double().numpy(), y.numpy())
    ours = penalised_objective(fit.weight, fit.bias, x, y, penalty, strength)
    theirs = penalised_objective(reference.coef_, reference.intercept_, x, y, penalty, strength)
    assert fit.converged and ours <= theirs + 1e-5
    if penalty == "l2":  # strictly convex: one optimum
        torch.testing.assert_close(fit.weight.double(), torch.as_tensor(reference.coef_), atol=2e-3, rtol=0)
    else:
        assert (fit.weight == 0).float().mean().item() == pytest.approx((reference.coef_ == 0).mean(), abs=0.02)


def test_kurtotic_weights_resist_fgsm_at_the_gaussian_models_clean_accuracy():
    """4 against 9 at 16 px (the upsampled digits: neighbouring pixels carry the same information, so many weight
    vectors fit equally well): the L1 model is as accurate, far more kurtotic, and loses fewer images to FGSM."""
    x, y = load_digits_tensors(16, 1)
    keep = (y == 4) | (y == 9)
    x, y = x[keep], (y[keep] == 9).long()
    train = torch.arange(len(x)) % 3 != 0
    result = kurtotic_linear(x[train], y[train], x[~train], y[~train], [0.05, 0.1], gaussian_strength=1e-2,
                             kurtotic_strengths=[1e-3], tolerance=0.01)
    gaussian, kurtotic = result.gaussian, result.kurtotic
    assert result.accuracy_gap <= 0.01 and gaussian.clean_accuracy > 0.95
    for model in (gaussian, kurtotic):
        oracle = stats.kurtosis(model.weight.flatten().double().numpy(), fisher=True, bias=True)
        assert model.excess_kurtosis == pytest.approx(oracle, rel=1e-6)
        assert model.l1_over_l2 == pytest.approx(
            (model.weight.abs().sum() / model.weight.norm()).item(), rel=1e-6)
        assert model.fgsm_accuracy == pytest.approx(model.exact_accuracy, abs=1 / len(x))  # two classes
    assert kurtotic.excess_kurtosis > gaussian.excess_kurtosis + 10
    assert kurtotic.l1_over_l2 < 0.5 * gaussian.l1_over_l2
    assert gaussian.rho == pytest.approx(math.sqrt(2 / math.pi), abs=0.15)  # near a Gaussian's mean|w| / rms(w)
    assert kurtotic.fgsm_accuracy[1] > gaussian.fgsm_accuracy[1] + 0.03  # eps 0.1


def test_kurtotic_linear_refuses_what_it_cannot_compare():
    x, y = load_digits_tensors(8, 1)
    with pytest.raises(UserInputError, match="widen kurtotic_strengths"):
        kurtotic_linear(x[:300], y[:300], x[300:400], y[300:400], [0.1], kurtotic_strengths=[1.0])  # W = 0: chance
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        kurtotic_linear(2 * x[:300], y[:300], x[300:400], y[300:400], [0.1])
    with pytest.raises(UserInputError, match="eps"):
        kurtotic_linear(x[:300], y[:300], x[300:400], y[300:400], [])


def test_study_writes_its_results_through_analyze(tmp_path, monkeypatch):
    monkeypatch.setitem(analyze.STUDIES, "kurtotic_linear", kurtotic_linear_study)
    out = tmp_path / "kurtotic"
    analyze.main(["kurtotic_linear", "--config", CONFIG, "--data.init_args.image_size", "8", "--eps", "[0.05, 0.1]",
                  "--kurtotic_strengths", "[0.002, 0.003]", "--tolerance", "0.05", "--output_dir", str(out),
                  "--wandb_project", "null"])
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["eval_images"] == 360 and results["accuracy_gap"] <= 0.05
    assert list(results["gaussian"]["fgsm_accuracy"]) == ["0.05", "0.1"]
    assert len(results["candidates"]) == 2 and results["kurtotic"] in results["candidates"]
    assert (out / "figures" / "accuracy_vs_eps.png").stat().st_size > 0
    assert "| kurtotic (L1), λ" in (out / "results.md").read_text()
    (out / "results.md").unlink()
    write_results(out)
    assert (out / "results.md").is_file()


def test_keep_classes_relabels_in_the_given_order():
    x, y = torch.rand(6, 1, 2, 2), torch.tensor([4, 9, 1, 9, 4, 2])
    kept_x, kept_y = keep_classes(x, y, [9, 4])
    assert kept_y.tolist() == [1, 0, 0, 1] and torch.equal(kept_x, x[[0, 1, 3, 4]])
    with pytest.raises(UserInputError, match="label 7"):
        keep_classes(x, y, [4, 7])
