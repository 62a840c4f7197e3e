"""Models found by name: `create_model("resnet20", num_classes=10, in_channels=3, image_size=32)`, and trained
ones from the repository's model zoo: `zoo_model("digits_small_cnn")` (see `freqmaps.zoo`).

Every model takes pixels in [0, 1] and normalises inside, so attacks and frequency maps act on raw pixels.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.models.mlp import MLP
from freqmaps.models.resnet_cifar import CifarResNet
from freqmaps.models.small_cnn import SmallCNN
from freqmaps.models.torchvision_models import resnet18, vit_b_16

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "small_cnn": lambda num_classes, in_channels, image_size, pretrained: SmallCNN(num_classes, in_channels),
    "resnet20": lambda num_classes, in_channels, image_size, pretrained: CifarResNet(20, num_classes, in_channels),
    "resnet56": lambda num_classes, in_channels, image_size, pretrained: CifarResNet(56, num_classes, in_channels),
    "resnet18": lambda num_classes, in_channels, image_size, pretrained: resnet18(num_classes, in_channels, pretrained),
    "vit_b_16": lambda num_classes, in_channels, image_size, pretrained: vit_b_16(
        num_classes, in_channels, image_size, pretrained
    ),
    "mlp": lambda num_classes, in_channels, image_size, pretrained, **options: MLP(
        num_classes, in_channels, image_size, **options
    ),
}
_OPTIONS = {"mlp": ("widths", "activation")}  # the models that take options (create_model's **options)

MODEL_NAMES = tuple(_REGISTRY)


def create_model(
    name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, pretrained: bool = False,
    **options,
) -> nn.Module:
    """Build a registered model; `options` are its own knobs (mlp: widths, activation). Raises UserInputError naming
    the known models for an unknown name, the accepted options for an unknown option."""
    if name not in _REGISTRY:
        raise UserInputError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    unknown = sorted(set(options) - set(_OPTIONS.get(name, ())))
    if unknown:
        accepted = ", ".join(_OPTIONS.get(name, ())) or "none"
        raise UserInputError(f"model {name!r} has no option {', '.join(unknown)}; it accepts {accepted}")
    if pretrained and name not in ("resnet18", "vit_b_16"):
        raise UserInputError(f"pretrained weights exist only for resnet18 and vit_b_16, not {name!r}")
    return _REGISTRY[name](num_classes, in_channels, image_size, pretrained, **options)


def classifier_head(network: nn.Module) -> nn.Module:
    """The network's classification head: its last `nn.Linear` (the `fc` of the ResNets, `heads.head` of ViT,
    the last layer of SmallCNN). UserInputError for a network without one."""
    linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserInputError(f"{type(network).__name__} has no nn.Linear classification head to train alone")
    return linears[-1]


def zoo_model(name: str, directory: str | None = None) -> nn.Module:
    """A trained model of the model zoo (`zoo/manifest.json`, or `directory` / $FREQMAPS_ZOO) in eval mode, its
    weights checked against their sha256; `freqmaps.zoo.load_model`. UserInputError listing the known names."""
    from freqmaps.zoo import load_model

    return load_model(name, directory)


__all__ = ["MLP", "MODEL_NAMES", "CifarResNet", "SmallCNN", "classifier_head", "create_model", "zoo_model"]
