"""`freqmaps.inputs.channels_last`: convolution kernels in NHWC for the length of an analysis, the model handed
back exactly as it came (same tensors, same storage, same strides), and the same maps up to float rounding."""
from __future__ import annotations

import pytest
import torch

from freqmaps.inputs import channels_last, frozen_eval
from freqmaps.maps import MapSettings, essential_maps
from freqmaps.models import create_model


def kernels(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.dim() == 4}


def test_kernels_are_channels_last_inside_and_the_very_same_tensors_after():
    torch.manual_seed(0)
    model = create_model("resnet20", 10, 3, 32)
    model.register_buffer("planted", torch.rand(1, 3, 4, 4))  # a 4-D buffer is converted and restored too
    before = {name: (p, p.data_ptr(), p.stride(), p.detach().clone()) for name, p in kernels(model).items()}
    buffer = model.planted
    with channels_last(model):
        inside = kernels(model)
        assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                   for p in inside.values())
        assert model.planted.is_contiguous(memory_format=torch.channels_last) and not model.planted.is_contiguous()
        assert all(torch.equal(inside[name], clone) for name, (_, _, _, clone) in before.items())
    for name, p in kernels(model).items():
        same, pointer, stride, clone = before[name]
        assert p is same and p.data_ptr() == pointer and p.stride() == stride and torch.equal(p, clone)
    assert model.planted is buffer


def test_the_model_is_handed_back_on_error_and_left_alone_when_disabled():
    model = create_model("small_cnn", 10, 1, 32)
    pointers = {name: p.data_ptr() for name, p in kernels(model).items()}
    with pytest.raises(RuntimeError, match="inside"):
        with channels_last(model):
            raise RuntimeError("inside")
    assert {name: p.data_ptr() for name, p in kernels(model).items()} == pointers
    with channels_last(model, enabled=False):
        assert {name: p.data_ptr() for name, p in kernels(model).items()} == pointers


def test_maps_solved_channels_last_match_the_nchw_maps():
    """Thirty fixed solver steps on a random ResNet-20: the same path up to float rounding (the convolution
    algorithm differs, the values do not). Adam moves an entry by about lr whatever its gradient's size, so an
    entry whose tiny gradient changes sign under rounding may end a step or two apart: bounded by 2 lr, rare."""
    torch.manual_seed(0)
    model = create_model("resnet20", 10, 3, 32).eval()
    x = torch.rand(6, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(1)
    settings = MapSettings(lam=0.05, min_steps=30, max_steps=30, batch_size=6)
    plain = essential_maps(model, x, y, settings, progress=False)
    with frozen_eval(model), channels_last(model):
        nhwc = essential_maps(model, x, y, settings, progress=False)
        logits = model(x)
    assert torch.allclose(logits, model(x), atol=1e-5)
    assert torch.equal(plain.steps, nhwc.steps) and torch.equal(plain.kept, nhwc.kept)
    gap = (plain.maps - nhwc.maps).abs()
    assert gap.max() < 2 * settings.lr and gap.mean() < 1e-4
    cosine = torch.nn.functional.cosine_similarity(plain.maps.flatten(1), nhwc.maps.flatten(1))
    assert cosine.min() > 0.9999
