"""Nodal dropout of first-layer filters: on a hand-built first layer where one filter carries the whole attack,
that filter is ranked most fragile and the rescaling that removes it makes the network robust, also to an adaptive
attack; on a trained digits CNN the batched sweep equals a per-filter loop of FGSM through a hook; the model is
left bit-identical."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from freqmaps.attacks import FGSM, attack_in_chunks
from freqmaps.errors import UserInputError
from freqmaps.fragility import (
    ChannelRescaled,
    FragilityResult,
    evaluate_rescaling,
    filter_spectra,
    fragility,
    rescaling_scales,
)
from tests.small_digits import digits32, zoo_cnn

SIZE, GAIN = 8, 50.0


def hand_built() -> nn.Module:
    """Two classes by mean brightness (0.3 or 0.7). First layer: 2x2 stride-2 filters, filter 0 a checkerboard
    (blind to the images, which are constant on each 2x2 patch, but read by the head with a large gain), filters 1-3
    patch means minus 0.5. logit1 - logit0 = 2 (mean - 0.5) + 2 GAIN · (mean checkerboard response). FGSM moves the
    mean by at most eps < 0.2, so without filter 0 no eps of the grid can flip a prediction; with it, the
    checkerboard step flips every one."""
    conv = nn.Conv2d(1, 4, 2, stride=2)
    patches = (SIZE // 2) ** 2
    head = nn.Linear(4 * patches, 2)
    with torch.no_grad():
        conv.weight[0, 0] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        conv.weight[1:, 0] = 0.25
        conv.bias.copy_(torch.tensor([0.0, -0.5, -0.5, -0.5]))
        head.bias.zero_()
        w = head.weight.view(2, 4, patches)
        w.zero_()
        w[1, 1:], w[0, 1:] = 1 / (3 * patches), -1 / (3 * patches)
        w[1, 0], w[0, 0] = GAIN / patches, -GAIN / patches
    return nn.Sequential(conv, nn.Flatten(), head).eval()


def hand_data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 2
    level = torch.where(y == 1, 0.7, 0.3)[:, None, None, None]
    patches = torch.rand(n, 1, SIZE // 2, SIZE // 2, generator=torch.Generator().manual_seed(0)) * 0.1 - 0.05
    return (level + patches).repeat_interleave(2, 2).repeat_interleave(2, 3), y


def test_the_filter_the_attack_works_through_is_ranked_most_fragile():
    model, (x, y) = hand_built(), hand_data()
    result = fragility(model, x, y, eps=(0.05, 0.1, 0.15), progress=False)
    assert result.base_clean == 1 and torch.equal(result.base_adversarial, torch.zeros(3))
    assert result.ranking[0] == 0
    assert torch.equal(result.fragility, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.equal(result.clean, torch.ones(4))  # no filter alone is needed for the clean task
    # the intact network's FGSM step moves the checkerboard filter's output alone: 4 eps per patch
    assert result.energy[0] == pytest.approx(torch.tensor([0.05, 0.1, 0.15]) * 4 * SIZE / 2, rel=1e-4)
    assert result.energy[1:].max() < 1e-5
    assert torch.allclose(result.spearman, torch.ones(3))


def test_rescaling_away_the_fragile_filter_defends_also_against_an_adaptive_attack():
    model, (x, y) = hand_built(), hand_data()
    result = evaluate_rescaling(model, x, y, torch.tensor([0.0, 1.0, 1.0, 1.0]), eps=0.1, pgd_steps=5)
    for attack in ("FGSM", "PGD-5"):
        assert result.accuracy[attack] == {"undefended": 0.0, "transferred": 1.0, "adaptive": 1.0}
    assert result.accuracy["clean"]["adaptive"] == 1.0
    scales = rescaling_scales(torch.tensor([1.0, 0.0, 0.0, -1.0]), strength=0.5)
    assert torch.allclose(scales, torch.tensor([1.5, 1.0, 1.0, 0.5]))  # fragile amplified, robust compressed
    with torch.no_grad():
        assert torch.equal(ChannelRescaled(model, torch.ones(4))(x), model(x))
    with pytest.raises(UserInputError, match="shape"):
        ChannelRescaled(model, torch.ones(3))


def test_batched_sweep_equals_a_per_filter_loop_of_fgsm_through_a_hook():
    model = zoo_cnn()
    x, y = digits32()
    x, y = x[1400:1416], y[1400:1416]
    eps = (0.02, 0.06)
    batched = fragility(model, x, y, eps=eps, progress=False)
    looped = fragility(model, x, y, eps=eps, batch_size=8, filters_per_pass=7, progress=False)
    assert torch.equal(batched.clean, looped.clean) and torch.equal(batched.adversarial, looped.adversarial)
    assert torch.allclose(batched.energy, looped.energy, rtol=1e-4, atol=1e-5)
    conv = model.features[0][0]
    for k in (0, 7):  # the reference: the library's FGSM on the network with channel k zeroed by a hook
        handle = conv.register_forward_hook(lambda m, i, out, k=k: out * (torch.arange(32) != k)[:, None, None])
        try:
            for e, radius in enumerate(eps):
                x_adv = attack_in_chunks(FGSM(radius, channels_last=False), model, x, y, 16)
                with torch.no_grad():
                    accuracy = (model(x_adv).argmax(1) == y).float().mean()
                assert batched.adversarial[k, e] == pytest.approx(accuracy.item(), abs=1 / 16 + 1e-6)
        finally:
            handle.remove()


def test_the_model_is_left_bit_identical(tmp_path):
    model = zoo_cnn()
    model.train()
    x, y = digits32()
    x, y = x[:8], y[:8]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = fragility(model, x, y, eps=(0.05,), filters_per_pass=5, progress=False)
    evaluate_rescaling(model, x, y, rescaling_scales(result.fragility), eps=0.05, pgd_steps=2)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    model.eval()
    result.save(tmp_path / "fragility.pt")
    loaded = FragilityResult.load(tmp_path / "fragility.pt")
    assert torch.equal(loaded.fragility, result.fragility) and loaded.layer == "features.0.0"


def test_filter_spectra_and_layer_choice():
    model = hand_built()
    spectra = filter_spectra(model[0], size=8)
    assert torch.allclose(spectra.radial.sum(1), torch.ones(4))
    assert spectra.centroid[0] > 2 * spectra.centroid[1:].max()  # the checkerboard is the high-frequency filter
    with pytest.raises(UserInputError, match="not a convolution"):
        fragility(model, *hand_data(4), layer="2", progress=False)
    with pytest.raises(UserInputError, match="eps"):
        fragility(model, *hand_data(4), eps=(), progress=False)
