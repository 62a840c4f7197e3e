"""Load the trained network back from a checkpoint written by `python train.py fit`.

A checkpoint holds the registry network's weights under `network.`, the input filter's state under
`input_filter.`, and in its hyper-parameters `model_name`, `num_classes`, `in_channels`, `image_size`,
`pretrained` and `input_filter` (a `{"class_path", "init_args"}` description or None). Checkpoints written
before objectives and filters became components (StandardClassifier and AdversarialClassifier: the network
under `model.`; FrequencyMaskedClassifier: `model.filter.` + `model.network.`, or `model.maps` +
`model.model.` for class maps, with flat `filter` / `radius` / `band` / `dropout` / `maps_file`
hyper-parameters) are read into that layout first.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from freqmaps.errors import UserInputError
from freqmaps.filters import FilteredNetwork, InputFilter
from freqmaps.models import create_model

CLASS_KEY = "freqmaps_lightning_module"  # the class the old classifiers recorded in their checkpoints
LEGACY_FILTERS = {  # FrequencyMaskedClassifier's `filter` -> (class, its arguments from the old hyper-parameters)
    "lowpass": ("freqmaps.filters.LowPass", lambda hp: {"radius": hp["radius"]}),
    "highpass": ("freqmaps.filters.HighPass", lambda hp: {"radius": hp["radius"]}),
    "band": ("freqmaps.filters.BandPass", lambda hp: {"low": hp["band"][0], "high": hp["band"][1]}),
    "dropout": ("freqmaps.filters.FrequencyDropoutFilter", lambda hp: {"p": hp["dropout"]}),
    "class_maps": ("freqmaps.filters.ClassMapFilter", lambda hp: {"maps_file": hp["maps_file"]}),
}


def renamed(state_dict: dict, prefixes: dict[str, str]) -> dict:
    """state_dict with each key's first matching old prefix replaced by its new one; other keys dropped."""
    out = {}
    for key, value in state_dict.items():
        old = next((p for p in prefixes if key.startswith(p)), None)
        if old is not None:
            out[prefixes[old] + key[len(old):]] = value
    return out


def legacy_layout(path: Path, ckpt: dict) -> tuple[dict, dict]:
    """(hyper_parameters, state_dict) of an old checkpoint in today's layout. A fixed mask the old filter
    saved must equal the one its hyper-parameters rebuild."""
    hparams, state = dict(ckpt["hyper_parameters"]), ckpt["state_dict"]
    written_by = ckpt.get(CLASS_KEY, "lightning_modules.classifier.StandardClassifier").rpartition(".")[2]
    if written_by in ("StandardClassifier", "AdversarialClassifier"):
        return {**hparams, "input_filter": None}, renamed(state, {"model.": "network."})
    if written_by != "FrequencyMaskedClassifier" or hparams.get("filter") not in LEGACY_FILTERS:
        raise UserInputError(
            f"{path} was written by {written_by} (filter {hparams.get('filter')!r}), a layout load_network does not "
            "know: it reads StandardClassifier checkpoints, and those of the AdversarialClassifier and "
            "FrequencyMaskedClassifier that objectives and input filters replaced; retrain with `python train.py fit`")
    class_path, init_args = LEGACY_FILTERS[hparams["filter"]]
    hparams["input_filter"] = {"class_path": class_path, "init_args": init_args(hparams)}
    if hparams["filter"] == "class_maps":
        return hparams, renamed(state, {"model.maps": "input_filter.maps", "model.model.": "network."})
    if "model.filter.mask" in state:
        rebuilt = InputFilter.from_description(hparams["input_filter"]).mask(hparams["image_size"],
                                                                             hparams["in_channels"])
        if not torch.equal(state["model.filter.mask"][0].cpu(), rebuilt):
            raise UserInputError(f"{path}: its saved filter mask differs from the {hparams['filter']} mask its "
                                 "hyper-parameters describe")
    return hparams, renamed(state, {"model.network.": "network."})


def load_network(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The pixels in [0, 1] -> logits model of a `train.py` checkpoint, in eval mode: the registry network, or a
    `FilteredNetwork` when it was trained behind an input filter. The file is read weights-only
    (`freqmaps.zoo.read_checkpoint`): nothing in it is unpickled or imported."""
    from freqmaps.zoo import read_checkpoint

    _, hparams, state = read_checkpoint(checkpoint)
    # pretrained weights are not fetched again: the checkpoint holds the trained ones
    network = create_model(hparams["model_name"], hparams["num_classes"], hparams["in_channels"],
                           hparams["image_size"], **(hparams.get("model_options") or {}))
    description = hparams.get("input_filter")
    model = network if description is None else FilteredNetwork(network, InputFilter.from_description(description))
    weights = {k: v for k, v in state.items() if k.startswith(("network.", "input_filter."))}
    model.load_state_dict(weights if description is not None else renamed(weights, {"network.": ""}))
    return model.to(map_location).eval()


def load_classifier(source: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """A zoo model by name (`python -m freqmaps.zoo list`; hash-checked, never unpickled) or the network of a
    checkpoint written by `python train.py fit` (a path); eval mode, on `map_location`."""
    from freqmaps.zoo import entries, load_model

    names = [item["name"] for item in entries()]
    if str(source) in names:
        return load_model(str(source), map_location=map_location)
    if not Path(source).is_file():
        raise UserInputError(f"{source} is neither a zoo model ({', '.join(names)}) nor a checkpoint file; pass a zoo "
                             "name or the .ckpt that `python train.py fit` wrote")
    return load_network(source, map_location)


def load_weights(network: nn.Module, source: str | Path) -> None:
    """Copy into `network` (a registry network, in place) the network weights of a zoo model or a `train.py`
    checkpoint (`load_classifier`); a filter the source was trained behind is not copied. UserInputError naming
    the source when its weights do not fit the network."""
    model = load_classifier(source)
    trained = model.network if isinstance(model, FilteredNetwork) else model
    try:
        network.load_state_dict(trained.state_dict())
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserInputError(f"init_weights {source}: its weights do not fit {type(network).__name__} ({first}); "
                             "start from a model of the same architecture") from error
