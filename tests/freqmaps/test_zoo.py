"""The model zoo: real checkpoints written by train.py exported and loaded back with the same logits, every
manifest entry loading with its hash checked and its recorded subset accuracy reproduced, and one-line errors
for altered weights, unknown names and unsupported filters."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from freqmaps import zoo
from freqmaps.errors import UserInputError
from freqmaps.models import zoo_model
from lightning_modules import load_network
from train import main as train_main

REPO = Path(__file__).resolve().parents[2]
# a short run that still writes real ModelCheckpoint files (and config.yaml beside them, in the CSV logger's
# folder), with a 40-image test split so that `evaluate` is quick
SHORT_RUN = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
             "--trainer.accelerator", "cpu", "--test_after_fit", "false", "--data.test_size", "40"]


def train_checkpoint(root: Path, config: str) -> Path:
    logger = json.dumps({"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(root)}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py"])  # pytest's own arguments are not the CLI's
        train_main(["fit", "--config", str(REPO / "configs" / config), "--trainer.default_root_dir", str(root),
                    "--trainer.logger", logger, *SHORT_RUN])
    return next(root.rglob("last.ckpt"))


@pytest.fixture(scope="module")
def standard_ckpt(tmp_path_factory) -> Path:
    """last.ckpt of a one-epoch StandardClassifier run on digits (configs/default.yaml)."""
    return train_checkpoint(tmp_path_factory.mktemp("standard"), "default.yaml")


@pytest.fixture(scope="module")
def lowpass_ckpt(tmp_path_factory) -> Path:
    """last.ckpt of a one-epoch run behind a LowPass(6) input filter on digits (configs/digits_lowpass.yaml)."""
    return train_checkpoint(tmp_path_factory.mktemp("lowpass"), "digits_lowpass.yaml")


@pytest.fixture(scope="module")
def digits_x() -> torch.Tensor:
    from datamodules.digits import load_digits_tensors

    return load_digits_tensors(32, 1)[0][:64]


def same_logits(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=1e-6)


def with_filter(ckpt: Path, out: Path, input_filter: dict) -> Path:
    """The checkpoint with another input filter description (state-free filters: what train.py writes for it)."""
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["input_filter"] = input_filter
    torch.save(state, out)
    return out


def legacy(ckpt: Path, out: Path, filter_hparams: dict | None = None) -> Path:
    """The checkpoint as the classes that objectives and filters replaced wrote it: StandardClassifier with the
    network under `model.`, or FrequencyMaskedClassifier (`filter_hparams`) with `model.filter.mask` and
    `model.network.`, the class recorded under `freqmaps_lightning_module`."""
    from freqmaps.fourier import lowpass_mask
    from lightning_modules.checkpoint import CLASS_KEY

    state = torch.load(ckpt, weights_only=True)
    hparams = {k: v for k, v in state["hyper_parameters"].items() if k != "input_filter"}
    network = {k[len("network."):]: v for k, v in state["state_dict"].items() if k.startswith("network.")}
    if filter_hparams is None:
        state[CLASS_KEY] = "lightning_modules.classifier.StandardClassifier"
        state["state_dict"] = {f"model.{k}": v for k, v in network.items()}
    else:
        state[CLASS_KEY] = "lightning_modules.frequency_masked.FrequencyMaskedClassifier"
        hparams.update({"radius": 6.0, "band": [4.0, 12.0], "dropout": 0.2, "maps_file": None, **filter_hparams})
        mask = lowpass_mask(32, hparams["radius"], 1).unsqueeze(0)
        state["state_dict"] = {"model.filter.mask": mask, **{f"model.network.{k}": v for k, v in network.items()}}
    state["hyper_parameters"] = hparams
    torch.save(state, out)
    return out


def test_export_round_trip(standard_ckpt, tmp_path, digits_x, monkeypatch):
    item = zoo.export_checkpoint(standard_ckpt, "tiny", tmp_path, config="configs/default.yaml",
                                 command="python train.py fit")
    assert item["architecture"] == {"model_name": "small_cnn", "num_classes": 10, "in_channels": 1, "image_size": 32,
                                    "input_filter": None}
    training = item["training"]
    assert training["resolved_config"] == str(standard_ckpt.parents[1] / "config.yaml")  # found beside checkpoints/
    assert (training["epochs"], training["seed"], training["config"]) == (1, 0, ["configs/default.yaml"])
    assert item["data"]["init_args"]["test_size"] == 40
    weights = (tmp_path / "tiny.safetensors").read_bytes()
    assert item["sha256"] == zoo.sha256(weights) and len(weights) <= zoo.MAX_FILE_BYTES
    model = zoo.load_model("tiny", tmp_path)
    assert not model.training
    same_logits(model, load_network(standard_ckpt), digits_x)
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path))  # the zoo folder from the environment
    same_logits(zoo_model("tiny"), model, digits_x)
    assert [e["name"] for e in zoo.entries()] == ["tiny"]


def test_export_round_trip_lowpass_filter(lowpass_ckpt, tmp_path, digits_x):
    item = zoo.export_checkpoint(lowpass_ckpt, "tiny_lowpass", tmp_path)
    assert item["architecture"]["input_filter"] == {"class_path": "freqmaps.filters.LowPass",
                                                    "init_args": {"radius": 6.0}}
    model = zoo.load_model("tiny_lowpass", tmp_path)
    same_logits(model, load_network(lowpass_ckpt), digits_x)
    with torch.no_grad():  # the filter is really there
        assert not torch.allclose(model(digits_x), model.network(digits_x))


@pytest.mark.parametrize("filter_hparams", [None, {"filter": "lowpass"}], ids=["standard", "frequency_masked"])
def test_export_old_checkpoint_layouts(standard_ckpt, lowpass_ckpt, tmp_path, digits_x, filter_hparams):
    source = standard_ckpt if filter_hparams is None else lowpass_ckpt
    item = zoo.export_checkpoint(legacy(source, tmp_path / "old.ckpt", filter_hparams), "tiny", tmp_path / "zoo")
    expected = None if filter_hparams is None else {"class_path": "freqmaps.filters.LowPass",
                                                    "init_args": {"radius": 6.0}}
    assert item["architecture"]["input_filter"] == expected
    assert item["training"]["lightning_module"].endswith("Classifier")
    same_logits(zoo.load_model("tiny", tmp_path / "zoo"), load_network(source), digits_x)


def test_export_dropout_is_no_filter_with_a_note(standard_ckpt, tmp_path, digits_x):
    spec = {"class_path": "freqmaps.filters.FrequencyDropoutFilter", "init_args": {"p": 0.2}}
    item = zoo.export_checkpoint(with_filter(standard_ckpt, tmp_path / "dropout.ckpt", spec), "tiny", tmp_path / "zoo",
                                 notes="digits.")
    assert item["architecture"]["input_filter"] is None
    assert item["notes"].startswith("digits. ") and "frequency dropout (p = 0.2)" in item["notes"]
    same_logits(zoo.load_model("tiny", tmp_path / "zoo"), load_network(standard_ckpt), digits_x)


@pytest.mark.parametrize("make, message", [
    (lambda ckpt, out: with_filter(ckpt, out, {"class_path": "freqmaps.filters.ClassMapFilter",
                                               "init_args": {"maps_file": "class_maps.pt"}}), "class-map filter"),
    (lambda ckpt, out: legacy(ckpt, out, {"filter": "class_maps", "maps_file": "class_maps.pt"}), "class-map filter"),
    (lambda ckpt, out: with_filter(ckpt, out, {"class_path": "freqmaps.filters.Gaussian", "init_args": {}}),
     "may name only the input filters"),
    (lambda ckpt, out: with_filter(ckpt, out, {"class_path": "freqmaps.filters.InputFilter", "init_args": {}}),
     "cannot be built"),
    (lambda ckpt, out: with_filter(ckpt, out, {"class_path": "freqmaps.filters.FilteredNetwork", "init_args": {}}),
     "is not a freqmaps.filters.InputFilter"),
], ids=["class_map_filter", "old_class_maps", "unknown_class", "abstract", "not_a_filter"])
def test_export_unsupported_filters_give_one_line_errors(standard_ckpt, tmp_path, make, message):
    with pytest.raises(UserInputError, match=message) as error:
        zoo.export_checkpoint(make(standard_ckpt, tmp_path / "bad.ckpt"), "tiny", tmp_path / "zoo")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "zoo").exists()  # nothing written


def test_export_refuses_to_overwrite_without_force(standard_ckpt, tmp_path):
    zoo.export_checkpoint(standard_ckpt, "tiny", tmp_path)
    with pytest.raises(UserInputError, match="--force"):
        zoo.export_checkpoint(standard_ckpt, "tiny", tmp_path)
    zoo.export_checkpoint(standard_ckpt, "tiny", tmp_path, force=True, notes="again")
    assert [e["notes"] for e in zoo.entries(tmp_path)] == ["again"]


def test_cli_export_evaluate_list_verify(standard_ckpt, tmp_path, capsys):
    zoo.main(["--zoo", str(tmp_path), "export", str(standard_ckpt), "tiny", "--config", "configs/default.yaml",
              "--config", "configs/x.yaml", "--resolved-config", str(standard_ckpt.parents[1] / "config.yaml"),
              "--command", "python train.py fit",
              "--train-seconds", "12.5", "--notes", "a test"])
    zoo.main(["--zoo", str(tmp_path), "evaluate", "tiny", "--batch-size", "16"])
    evaluation = zoo.entry("tiny", tmp_path)["evaluation"]
    assert evaluation["test_images"] == 40 and evaluation["subset"] == {
        "size": 40, "seed": 0, "accuracy": evaluation["clean_accuracy"]}
    assert 0 <= evaluation["robust_accuracy"] <= evaluation["clean_accuracy"] <= 1
    assert evaluation["attack"] == {"name": "PGD", "norm": "linf", "eps": 8 / 255, "step_size": 2 / 255, "steps": 20,
                                    "random_start": True, "restarts": 1, "early_stop": True, "seed": 0}
    training = zoo.entry("tiny", tmp_path)["training"]
    assert training["seconds"] == 12.5 and training["config"] == ["configs/default.yaml", "configs/x.yaml"]
    capsys.readouterr()
    zoo.main(["--zoo", str(tmp_path), "list"])
    zoo.main(["--zoo", str(tmp_path), "verify"])
    out = capsys.readouterr().out
    assert "tiny" in out and f"{100 * evaluation['clean_accuracy']:.1f}%" in out and "ok " in out


def test_evaluate_is_seeded_and_leaves_the_rng_alone(standard_ckpt, tmp_path):
    standalone = shutil.copy(standard_ckpt, tmp_path / "standalone.ckpt")  # no config.yaml above it
    with pytest.raises(UserInputError, match="records no data"):
        zoo.load_test_split(zoo.export_checkpoint(standalone, "tiny", tmp_path))
    zoo.export_checkpoint(standard_ckpt, "tiny", tmp_path, force=True)
    model = zoo.load_model("tiny", tmp_path)
    data = Subset(zoo.load_test_split(zoo.entry("tiny", tmp_path)), range(16))
    state = torch.get_rng_state()
    first = zoo.evaluate(model, data, batch_size=8, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    second = zoo.evaluate(model, data, batch_size=8, progress=False)
    assert (first.clean_accuracy, first.robust_accuracy) == (second.clean_accuracy, second.robust_accuracy)
    assert first.test_images == 16 and first.clean_accuracy == pytest.approx(zoo.accuracy(model, data))


# ------------------------------------------------------------------------------------- the repository's zoo

ENTRIES = zoo.entries(zoo.DEFAULT_ZOO)


def test_repository_zoo_stays_small():
    files = [zoo.DEFAULT_ZOO / e["file"] for e in ENTRIES]
    assert ENTRIES and all(f.stat().st_size <= zoo.MAX_FILE_BYTES for f in files)
    assert sum(f.stat().st_size for f in files) <= zoo.MAX_ZOO_BYTES
    assert len({e["name"] for e in ENTRIES}) == len(ENTRIES)


@pytest.fixture(scope="session")
def cifar10_test_root(tmp_path_factory) -> Path:
    """CIFAR-10 test images from $FREQMAPS_CIFAR10: an image folder (with test/<class>/*.jpg) as it is, or a
    .tar.gz whose test split is extracted once into a temporary folder."""
    source = os.environ.get("FREQMAPS_CIFAR10")
    if not source:
        pytest.skip("CIFAR-10 zoo entries need FREQMAPS_CIFAR10 (an extracted CIFAR-10 image folder or its .tar.gz)")
    if source.endswith((".tar.gz", ".tgz")):
        return zoo.extract_test_split(source, tmp_path_factory.mktemp("cifar10"))
    return Path(source)


def test_cifar10_test_split(cifar10_test_root):
    item = {"name": "cifar", "data": {"datamodule": "datamodules.CIFAR10DataModule", "init_args": {}}}
    data = zoo.load_test_split(item, cifar10_test_root)
    x, y = data[len(data) - 1]
    assert len(data) == 10_000 and x.shape == (3, 32, 32) and 0 <= x.min() <= x.max() <= 1 and y == 9
    assert torch.bincount(torch.as_tensor([data[i][1] for i in range(0, 10_000, 100)])).tolist() == [10] * 10
    from_environment = zoo.load_test_split(item)  # $FREQMAPS_CIFAR10 itself, folder or archive
    assert torch.equal(from_environment.labels, data.labels) and torch.equal(from_environment.images, data.images)


@pytest.mark.parametrize("item", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_every_entry_loads_and_reproduces_its_subset_accuracy(item, request):
    model = zoo.load_model(item["name"], zoo.DEFAULT_ZOO)  # checks the sha256 first
    assert not model.training
    evaluation = item["evaluation"]
    assert evaluation is not None, f"{item['name']} was never evaluated: python -m freqmaps.zoo evaluate NAME"
    assert evaluation["attack"]["eps"] == pytest.approx(8 / 255) and evaluation["attack"]["steps"] == 20
    root = None
    if item["data"]["datamodule"].endswith("CIFAR10DataModule"):
        root = request.getfixturevalue("cifar10_test_root")
    data = zoo.load_test_split(item, root)
    subset = evaluation["subset"]
    indices = zoo.subset_indices(len(data), subset["size"], subset["seed"])
    assert len(indices) == subset["size"]
    assert abs(zoo.accuracy(model, Subset(data, indices.tolist())) - subset["accuracy"]) <= 0.01


def test_tampered_weights_give_a_one_line_error(tmp_path):
    copy = shutil.copytree(zoo.DEFAULT_ZOO, tmp_path / "zoo")
    name, weights = ENTRIES[0]["name"], copy / ENTRIES[0]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(UserInputError, match="sha256") as error:
        zoo.load_model(name, copy)
    assert "\n" not in str(error.value) and name in str(error.value)
    with pytest.raises(UserInputError, match="failed verification"):
        zoo.main(["--zoo", str(copy), "verify"])


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UserInputError) as error:
        zoo.load_model("no_such_model", zoo.DEFAULT_ZOO)
    message = str(error.value)
    assert "no_such_model" in message and all(e["name"] in message for e in ENTRIES) and "\n" not in message


def test_cli_errors_are_one_line(tmp_path):
    shutil.copy(zoo.DEFAULT_ZOO / zoo.MANIFEST, tmp_path / zoo.MANIFEST)
    result = subprocess.run([sys.executable, "-m", "freqmaps.zoo", "evaluate", "no_such_model"], cwd=REPO,
                            env={**os.environ, zoo.ZOO_ENV: str(tmp_path)}, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: unknown zoo model")
    assert json.loads((tmp_path / zoo.MANIFEST).read_text()) == json.loads((zoo.DEFAULT_ZOO / zoo.MANIFEST).read_text())
