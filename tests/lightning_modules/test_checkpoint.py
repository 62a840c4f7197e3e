"""load_network reads the checkpoints train.py writes now (network under `network.`, filter under
`input_filter.`, the filter described in plain-data hyper-parameters) and those of the classes objectives and
input filters replaced, giving the same logits as the module that was trained."""
from __future__ import annotations

from collections import OrderedDict

import lightning as L
import pytest
import torch
from torch import nn

from datamodules import DigitsDataModule
from freqmaps.class_maps import ClassMapDefence, ClassMaps
from freqmaps.errors import UserInputError
from freqmaps.filters import BandPass, ClassMapFilter, FilteredNetwork, FrequencyDropoutFilter, LowPass
from freqmaps.fourier import FrequencyMask, band_mask, lowpass_mask
from freqmaps.frequency_dropout import FrequencyDropout
from lightning_modules import StandardClassifier, load_network
from lightning_modules.checkpoint import CLASS_KEY

SIZE = 16
CLI = {"_instantiator": "lightning.pytorch.cli.instantiate_module"}  # what LightningCLI adds to the hparams
OLD_FILTER_HPARAMS = {"radius": 6.0, "band": [4.0, 12.0], "dropout": 0.2, "maps_file": None}


@pytest.fixture(scope="module")
def maps_file(tmp_path_factory) -> str:
    torch.manual_seed(0)
    ones = torch.ones(10, dtype=torch.long)
    path = tmp_path_factory.mktemp("maps") / "class_maps.pt"
    ClassMaps(torch.rand(10, 1, SIZE, SIZE), ones, ones.bool(), ones, ones, {"lam": 1e-3}).save(path)
    return str(path)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(6, 1, SIZE, SIZE)


def trained(input_filter, path) -> StandardClassifier:
    """A classifier after a few training steps on the digits, saved by its Trainer at `path`."""
    L.seed_everything(0)
    module = StandardClassifier("small_cnn", 10, 1, SIZE, input_filter=input_filter)
    trainer = L.Trainer(max_steps=3, limit_val_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DigitsDataModule(image_size=SIZE, batch_size=32))
    trainer.save_checkpoint(path)
    return module.eval()


def same_logits(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("make_filter", [
    lambda _: None, lambda _: LowPass(4.0), lambda _: BandPass(2.0, 6.0), lambda _: FrequencyDropoutFilter(0.3),
    ClassMapFilter,
], ids=["none", "lowpass", "band", "dropout", "class_maps"])
def test_new_checkpoint_loads_the_trained_model(make_filter, maps_file, x, tmp_path):
    path = tmp_path / "new.ckpt"
    module = trained(make_filter(maps_file), path)
    ckpt = torch.load(path, weights_only=True)  # nothing in it needs unpickling
    hparams = ckpt["hyper_parameters"]
    assert {k: hparams[k] for k in ("model_name", "num_classes", "in_channels", "image_size", "pretrained")} == {
        "model_name": "small_cnn", "num_classes": 10, "in_channels": 1, "image_size": SIZE, "pretrained": False}
    expected_filter = None if module.input_filter is None else module.input_filter.description()
    assert hparams["input_filter"] == expected_filter
    prefixes = {key.split(".")[0] for key in ckpt["state_dict"]}
    expected = {"network", "val_acc_best"}  # the best-so-far tracker travels for an exact resume
    assert prefixes == (expected | {"input_filter"} if isinstance(module.input_filter, ClassMapFilter) else expected)
    network = load_network(path)
    assert not network.training
    assert isinstance(network, FilteredNetwork) == (module.input_filter is not None)
    same_logits(network, module.model, x)


def legacy(ckpt: dict, written_by: str, hparams: dict, model: nn.Module) -> dict:
    """`ckpt` rewritten as the old classes wrote it (layouts read off their checkpoints at commit d81de00): the
    class recorded under CLASS_KEY, LightningCLI's hparams, and `model`'s state under `model.`."""
    return {**ckpt, CLASS_KEY: f"lightning_modules.{written_by}", "hyper_parameters": {
        "_class_path": f"lightning_modules.{written_by.rpartition('.')[2]}", "model_name": "small_cnn",
        "num_classes": 10, "in_channels": 1, "image_size": SIZE, "pretrained": False, **hparams, **CLI},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}


def filtered(first: nn.Module):
    """FrequencyMaskedClassifier's model: Sequential(filter=first, network=...)."""
    return lambda network: nn.Sequential(OrderedDict(filter=first, network=network))


def test_old_checkpoints_load_the_same_model(maps_file, x, tmp_path):
    masked = "frequency_masked.FrequencyMaskedClassifier"
    cases = {  # name: (today's filter, the old model around a network, the old class, its own hparams)
        "standard": (None, lambda net: net, "classifier.StandardClassifier", {"label_smoothing": 0.0}),
        "adversarial": (None, lambda net: net, "adversarial.AdversarialClassifier",
                        {"method": "trades", "trades_beta": 6.0}),
        "lowpass": (LowPass(6.0), filtered(FrequencyMask(lowpass_mask(SIZE, 6.0, 1))), masked,
                    {**OLD_FILTER_HPARAMS, "filter": "lowpass"}),
        "band": (BandPass(4.0, 12.0), filtered(FrequencyMask(band_mask(SIZE, 4.0, 12.0, 1))), masked,
                 {**OLD_FILTER_HPARAMS, "filter": "band"}),
        "dropout": (FrequencyDropoutFilter(0.2), filtered(FrequencyDropout(0.2)), masked,
                    {**OLD_FILTER_HPARAMS, "filter": "dropout"}),
        "class_maps": (ClassMapFilter(maps_file), lambda net: ClassMapDefence(net, ClassMaps.load(maps_file).maps),
                       masked, {**OLD_FILTER_HPARAMS, "filter": "class_maps", "maps_file": maps_file}),
    }
    for name, (input_filter, old_model, written_by, hparams) in cases.items():
        module = trained(input_filter, tmp_path / f"{name}_new.ckpt")
        old = legacy(torch.load(tmp_path / f"{name}_new.ckpt", weights_only=True), written_by, hparams,
                     old_model(module.network))
        assert not any(key.startswith("network.") for key in old["state_dict"])
        torch.save(old, tmp_path / f"{name}.ckpt")
        same_logits(load_network(tmp_path / f"{name}.ckpt"), module.model, x)


def test_old_checkpoints_that_do_not_fit_fail_with_one_line(x, tmp_path):
    module = trained(None, tmp_path / "new.ckpt")
    ckpt = torch.load(tmp_path / "new.ckpt", weights_only=True)
    radius_3 = filtered(FrequencyMask(lowpass_mask(SIZE, 3.0, 1)))(module.network)  # the hparams say radius 6
    torch.save(legacy(ckpt, "frequency_masked.FrequencyMaskedClassifier", {**OLD_FILTER_HPARAMS, "filter": "lowpass"},
                      radius_3), tmp_path / "mask.ckpt")
    with pytest.raises(UserInputError, match="saved filter mask differs from the lowpass mask"):
        load_network(tmp_path / "mask.ckpt")
    torch.save(legacy(ckpt, "robust.RobustClassifier", {}, module.network), tmp_path / "other.ckpt")
    with pytest.raises(UserInputError, match="written by RobustClassifier .* a layout load_network does not know"):
        load_network(tmp_path / "other.ckpt")
    with pytest.raises(UserInputError, match="no checkpoint at"):
        load_network(tmp_path / "none.ckpt")
