"""The saturation penalty equals a hand computation for ReLU and sigmoid units, its hooks leave the model as it was,
the annealing follows its schedule, the objective adds λ·penalty, and the weight kurtosis matches scipy's."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.models import create_model
from freqmaps.objectives import CrossEntropy
from freqmaps.saturation import Annealing, SaturationPenalty, excess_kurtosis, saturation_penalty, weight_kurtosis


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 2))


def test_penalty_equals_a_hand_computation_for_both_activations(net):
    x = torch.rand(6, 1, 1, 3)
    _, lin1, _, lin2, _, _ = net
    h1 = x.flatten(1) @ lin1.weight.T + lin1.bias
    h2 = torch.relu(h1) @ lin2.weight.T + lin2.bias
    s = torch.sigmoid(h2)
    expected = (torch.relu(h1).sum() + (s * (1 - s)).sum()) / len(x)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    before = net(x)
    penalty = saturation_penalty(net, x)
    assert torch.allclose(penalty, expected, rtol=1e-6)
    penalty.backward()
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0
    assert all(not m._forward_hooks for m in net.modules())  # hooks removed
    assert torch.equal(net(x), before) and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_a_model_without_activation_modules_is_refused():
    with pytest.raises(UserInputError, match="no nn.ReLU or nn.Sigmoid"):
        saturation_penalty(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)), torch.rand(2, 1, 1, 3))


def test_annealing_follows_its_schedule():
    linear = Annealing(0.4, epochs=4)
    assert [linear(e) for e in range(7)] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    exponential = Annealing(0.4, epochs=4, kind="exponential", decades=2)
    values = [exponential(e) for e in range(7)]
    assert values[0] == 0 and values[4:] == [0.4] * 3
    ratios = [values[e + 1] / values[e] for e in range(1, 4)]
    assert ratios == pytest.approx([10 ** 0.5] * 3)  # a geometric rise of 2 decades over 4 epochs
    assert values[1] == pytest.approx(0.4 * 10 ** -1.5)
    with pytest.raises(UserInputError, match="annealing"):
        Annealing(0.1, kind="cosine")


def test_objective_adds_the_annealed_penalty_of_training_passes_only(net):
    x, y = torch.rand(6, 1, 1, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    objective = SaturationPenalty(CrossEntropy(), lambda_max=0.5, anneal_epochs=2)
    net.train()
    assert torch.allclose(objective(net, x, y).loss, F.cross_entropy(net(x), y))  # λ = 0 before the first epoch
    objective.start_epoch(1)
    result = objective(net, x, y)
    assert objective.lam == 0.25
    assert torch.allclose(result.loss, F.cross_entropy(net(x), y) + 0.25 * saturation_penalty(net, x))
    net.eval()  # an attack's eval-mode passes do not count
    assert torch.allclose(objective(net, x, y).loss, F.cross_entropy(net(x), y))


def test_kurtosis_matches_scipy_and_mlp_registry():
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    heavy = torch.distributions.StudentT(5.0).sample((4000,))
    assert excess_kurtosis(heavy) == pytest.approx(stats.kurtosis(heavy.numpy(), fisher=True, bias=True), rel=1e-6)
    model = create_model("mlp", 10, 1, 8, widths=[16, 8], activation="sigmoid")
    kurtosis = weight_kurtosis(model)
    assert list(kurtosis) == ["features.1", "features.3", "head"]
    assert kurtosis["head"] == pytest.approx(float(stats.kurtosis(model.head.weight.detach().flatten().numpy())),
                                             rel=1e-5)
    assert math.isnan(excess_kurtosis(torch.ones(5)))
    assert create_model("mlp", 10, 1, 8, widths=[16], activation="relu")(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(UserInputError, match="no option depth"):
        create_model("mlp", depth=3)
    with pytest.raises(UserInputError, match="no option widths"):
        create_model("small_cnn", widths=[3])
