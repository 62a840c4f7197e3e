"""The model registry: shapes, sizes, normalisation inside the model, clear errors."""
from __future__ import annotations

import pytest
import torch

from freqmaps.errors import UserInputError
from freqmaps.models import MODEL_NAMES, create_model


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "vit_b_16"])
@pytest.mark.parametrize("channels", [1, 3])
def test_models_take_pixels_and_return_logits(name, channels):
    model = create_model(name, num_classes=7, in_channels=channels, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(2, channels, 32, 32)).shape == (2, 7)


def test_vit_at_small_size():
    model = create_model("vit_b_16", num_classes=5, in_channels=3, image_size=32).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 5)


def test_resnet20_is_the_papers_size():
    n = sum(p.numel() for p in create_model("resnet20").parameters())
    assert 0.26e6 < n < 0.28e6


def test_normalisation_lives_inside_the_model():
    model = create_model("resnet20")
    x = torch.rand(2, 3, 32, 32)
    normalized = model.normalize(x)
    expected = (x - torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)) / torch.tensor(
        [0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalized, expected)


def test_bad_names_are_rejected():
    with pytest.raises(UserInputError, match="unknown model 'resnet99'.*resnet20"):
        create_model("resnet99")
    with pytest.raises(UserInputError, match="pretrained weights exist only"):
        create_model("resnet20", pretrained=True)
