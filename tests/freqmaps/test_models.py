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


def test_pretrained_weights_load_from_the_hub_cache_safely(tmp_path, monkeypatch):
    import hashlib
    import pickle
    from types import SimpleNamespace

    from freqmaps.models.torchvision_models import imagenet_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(UserInputError, match=r"no .*resnet18-f37072fd\.pth\. Download https://download\.pytorch"):
        create_model("resnet18", pretrained=True)
    state = torchvision_resnet18_state()
    path = tmp_path / "checkpoints" / "weights.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    named = path.rename(tmp_path / "checkpoints" / f"resnet18-{digest[:8]}.pth")
    loaded = imagenet_weights(SimpleNamespace(url=f"https://example.org/{named.name}"))
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    (tmp_path / "checkpoints" / "resnet18-ffffffff.pth").write_bytes(named.read_bytes())  # a wrong hash prefix
    with pytest.raises(UserInputError, match="the download is damaged"):
        imagenet_weights(SimpleNamespace(url="https://example.org/resnet18-ffffffff.pth"))
    hostile = tmp_path / "checkpoints" / "evil.pth"
    hostile.write_bytes(pickle.dumps(SimpleNamespace(a=1), protocol=2))  # a pickle of an object, not of tensors
    digest = hashlib.sha256(hostile.read_bytes()).hexdigest()
    evil = hostile.rename(tmp_path / "checkpoints" / f"evil-{digest[:8]}.pth")
    with pytest.raises(UserInputError, match="does not load as tensors"):
        imagenet_weights(SimpleNamespace(url=f"https://example.org/{evil.name}"))


def torchvision_resnet18_state() -> dict[str, torch.Tensor]:
    import torchvision

    return torchvision.models.resnet18().state_dict()


def test_head_only_training_freezes_everything_but_the_last_linear():
    from lightning_modules import StandardClassifier

    module = StandardClassifier(model_name="resnet18", num_classes=10, image_size=32, trainable="head")
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"network.net.fc.weight", "network.net.fc.bias"}
    (group,) = module.configure_optimizers().param_groups
    assert {id(p) for p in group["params"]} == {id(module.network.net.fc.weight), id(module.network.net.fc.bias)}
    vit = StandardClassifier(model_name="vit_b_16", num_classes=10, image_size=32, trainable="head")
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == {"network.net.heads.head.weight",
                                                                          "network.net.heads.head.bias"}
    with pytest.raises(UserInputError, match="trainable must be 'all' or 'head'"):
        StandardClassifier(trainable="backbone")
