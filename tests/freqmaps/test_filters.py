"""Input filters: a network behind a fixed mask never sees the masked frequencies, frequency dropout is random in
training and off in eval, the class-map filter is the label-free defence, and every filter round-trips through its
plain-data description."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from freqmaps.class_maps import ClassMapDefence, ClassMaps
from freqmaps.errors import UserInputError
from freqmaps.filters import (
    BandPass, ClassMapFilter, FilteredNetwork, FrequencyDropoutFilter, HighPass, InputFilter, LowPass,
)
from freqmaps.fourier import frequency_radius
from freqmaps.models import create_model


def seen_by_network(model: FilteredNetwork, x: torch.Tensor) -> torch.Tensor:
    """What the network behind the filter receives for input x."""
    seen = []
    handle = model.network.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    model(x)
    handle.remove()
    return seen[-1]


def class_maps_file(path, maps: torch.Tensor) -> str:
    k = len(maps)
    ones = torch.ones(k, dtype=torch.long)
    ClassMaps(maps, ones, ones.bool(), ones, ones, {"lam": 1e-3}).save(path)
    return str(path)


@pytest.mark.parametrize("input_filter, removed", [
    (LowPass(5.0), lambda r: r > 5), (HighPass(5.0), lambda r: r <= 5),
    (BandPass(3.0, 7.0), lambda r: (r < 3) | (r > 7)),
])
def test_network_behind_a_mask_sees_no_masked_frequency(input_filter, removed):
    model = FilteredNetwork(create_model("small_cnn", 10, 3, 32), input_filter)
    x = torch.rand(4, 3, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        spectrum = torch.fft.fftshift(torch.fft.fft2(seen_by_network(model, x)), dim=(-2, -1)).abs()
        gone = removed(frequency_radius(32))
        assert spectrum[..., gone].max() < 1e-4
        assert spectrum[..., ~gone].mean() > 1e-2
    assert set(model.state_dict()) == {f"network.{k}" for k in model.network.state_dict()}  # the mask is not saved


def test_mask_follows_the_input_and_is_an_ordinary_tensor_after_inference_mode():
    low = LowPass(2.0)
    with torch.inference_mode():
        low(torch.rand(1, 1, 8, 8), None)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    low(x, None).sum().backward()  # a mask cached under inference mode would refuse backward
    assert low._mask.shape == (3, 16, 16) and x.grad is not None


def test_frequency_dropout_is_random_in_training_and_off_in_eval():
    model = FilteredNetwork(create_model("small_cnn", 10, 1, 32), FrequencyDropoutFilter(0.5))
    x = torch.rand(2, 1, 32, 32)
    model.train()
    dropped = (torch.fft.fft2(seen_by_network(model, x)).abs() < 1e-5).float().mean().item()
    assert 0.3 < dropped < 0.7
    model.eval()
    assert torch.equal(seen_by_network(model, x), x)


def test_class_map_filter_is_the_label_free_defence(tmp_path):
    torch.manual_seed(0)
    network = create_model("small_cnn", 10, 1, 16).eval()
    maps = torch.rand(10, 1, 16, 16)
    input_filter = ClassMapFilter(class_maps_file(tmp_path / "maps.pt", maps))
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(FilteredNetwork(network, input_filter)(x), ClassMapDefence(network, maps)(x))
    input_filter.check(10, 1, 16)
    with pytest.raises(UserInputError, match=r"shape \(10, 1, 16, 16\), the model needs \(10, 1, 32, 32\)"):
        input_filter.check(10, 1, 32)
    with pytest.raises(UserInputError, match="no class-maps file"):
        ClassMapFilter(str(tmp_path / "none.pt"))


@pytest.mark.parametrize("input_filter", [LowPass(6.0), HighPass(3.5), BandPass(2.0, 9.0), FrequencyDropoutFilter(0.3)])
def test_description_is_plain_data_and_rebuilds_the_filter(input_filter):
    description = input_filter.description()
    assert description["class_path"] == f"freqmaps.filters.{type(input_filter).__name__}"
    rebuilt = InputFilter.from_description(description)
    assert type(rebuilt) is type(input_filter) and rebuilt.description() == description
    x = torch.rand(2, 3, 16, 16)
    if not isinstance(input_filter, FrequencyDropoutFilter):
        torch.testing.assert_close(rebuilt(x, None), input_filter(x, None))


def test_bad_filter_arguments_and_descriptions_fail_clearly():
    with pytest.raises(UserInputError, match="0 <= low <= high"):
        BandPass(9.0, 2.0)
    with pytest.raises(UserInputError, match="0 <= low <= high"):
        LowPass(-1.0)
    with pytest.raises(UserInputError, match=r"\[0, 1\)"):
        FrequencyDropoutFilter(1.5)
    with pytest.raises(UserInputError, match="may name only the input filters of freqmaps.filters"):
        InputFilter.from_description({"class_path": "torch.nn.Identity", "init_args": {}})  # never imported
    with pytest.raises(UserInputError, match="not a freqmaps.filters.InputFilter"):
        InputFilter.from_description({"class_path": "freqmaps.filters.FilteredNetwork", "init_args": {}})
    with pytest.raises(UserInputError, match="may name only the input filters"):
        InputFilter.from_description({"class_path": "freqmaps.filters.Nope", "init_args": {}})
    with pytest.raises(UserInputError, match="square"):
        LowPass(2.0)(torch.rand(1, 1, 8, 16), nn.Identity())
