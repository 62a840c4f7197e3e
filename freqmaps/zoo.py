"""The model zoo: small trained models kept in the repository (`zoo/` beside this package), one safetensors
weight file each, described by `zoo/manifest.json` (architecture, input filter, how it was trained, measured
accuracies, sha256 of the weights).

    from freqmaps.zoo import load_model, entries, entry
    model = load_model("digits_small_cnn")     # nn.Module in eval mode: pixels in [0, 1] -> logits

Command line (`python -m freqmaps.zoo --help`):

    python -m freqmaps.zoo list
    python -m freqmaps.zoo verify
    python -m freqmaps.zoo export CKPT NAME --config configs/x.yaml [--resolved-config DIR/config.yaml]
        --command "python train.py fit ..." [--train-seconds S --notes ...]
    python -m freqmaps.zoo evaluate NAME [--data-root DIR]

The zoo directory is `zoo/` at the repository root, or `$FREQMAPS_ZOO`, or the `directory` argument / `--zoo`.
Weights are read with safetensors only (nothing is unpickled), after their sha256 is checked against the
manifest. Exporting reads a `train.py` checkpoint with `read_checkpoint` (`torch.load(weights_only=True)`; checkpoints in the
layout of the classes that objectives and input filters replaced through `lightning_modules.checkpoint`, imported
only for them). Evaluation takes models and datasets; only `load_test_split` (the command line's `evaluate`,
the tests) imports the project's datamodules.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from freqmaps.attacks import PGD, Attack
from freqmaps.class_maps import predict
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.filters import FilteredNetwork, FrequencyMaskFilter, InputFilter
from freqmaps.models import create_model
from freqmaps.sampling import seeded_indices

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = REPO / "zoo"
ZOO_ENV = "FREQMAPS_ZOO"
MANIFEST = "manifest.json"
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_ZOO_BYTES = 25 * 1024 * 1024
SUBSET_SIZE, SUBSET_SEED = 500, 0
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")


def default_attack() -> PGD:
    """The zoo's robust-accuracy attack: PGD-20, L∞, eps 8/255, step 2/255, random start, stopping on an image at
    its first fooling iterate (any point of the ball that fools counts; it never reports more robustness than the
    last iterate would, and fooled images cost no more steps)."""
    return PGD(eps=8 / 255, norm="linf", steps=20, step_size=2 / 255, random_start=True, early_stop=True)


# ---------------------------------------------------------------------------------------------- the manifest


def zoo_dir(directory: str | Path | None = None) -> Path:
    """The zoo folder: `directory` if given, else $FREQMAPS_ZOO, else `zoo/` at the repository root."""
    return Path(directory or os.environ.get(ZOO_ENV) or DEFAULT_ZOO)


def _read_manifest(directory: Path, create: bool = False) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        if create:
            return {"format": 1, "models": []}
        raise UserInputError(f"no model zoo at {directory} (no {MANIFEST}); set {ZOO_ENV} or pass the zoo folder")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path} is not valid JSON ({error}); restore it with `git checkout zoo/`") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), list):
        raise UserInputError(f"{path} has no list of models under 'models'")
    return manifest


def _write_manifest(directory: Path, manifest: dict) -> None:
    manifest["models"] = sorted(manifest["models"], key=lambda e: e["name"])
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def entries(directory: str | Path | None = None) -> list[dict]:
    """Every manifest entry (plain dicts, sorted by name); see README's "Model zoo" for the fields."""
    return _read_manifest(zoo_dir(directory))["models"]


def entry(name: str, directory: str | Path | None = None) -> dict:
    """The manifest entry called `name`; UserInputError listing the known names otherwise."""
    known = entries(directory)
    for item in known:
        if item["name"] == name:
            return item
    names = ", ".join(e["name"] for e in known) or "none"
    raise UserInputError(f"unknown zoo model {name!r}; known: {names} (zoo at {zoo_dir(directory)})")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------- building models


def build_model(architecture: dict, network: nn.Module | None = None) -> nn.Module:
    """The model an entry's `architecture` describes: the registry network (or `network`), behind its
    `input_filter` (a `freqmaps.filters` description, as in configs and checkpoints) in a FilteredNetwork."""
    network = network if network is not None else create_model(
        architecture["model_name"], architecture["num_classes"], architecture["in_channels"],
        architecture["image_size"],
    )
    description = architecture.get("input_filter")
    return network if description is None else FilteredNetwork(network, InputFilter.from_description(description))


def load_model(name: str, directory: str | Path | None = None, map_location: str | torch.device = "cpu") -> nn.Module:
    """A zoo model in eval mode (pixels in [0, 1] -> logits), its weight file checked against the manifest's
    sha256 before it is read (safetensors, never unpickled). UserInputError for an unknown name, a missing or
    altered file, or weights that do not fit the architecture."""
    item = entry(name, directory)
    path = zoo_dir(directory) / item["file"]
    if not path.is_file():
        raise UserInputError(f"zoo model {name!r}: weight file {path} is missing; restore it with `git checkout zoo/`")
    data = path.read_bytes()
    if sha256(data) != item["sha256"]:
        raise UserInputError(
            f"zoo model {name!r}: {path} does not match the manifest's sha256 ({sha256(data)[:12]}... instead of "
            f"{item['sha256'][:12]}...); restore the file (`git checkout zoo/`) or export the entry again"
        )
    arch = item["architecture"]
    network = create_model(arch["model_name"], arch["num_classes"], arch["in_channels"], arch["image_size"])
    try:
        network.load_state_dict(load_safetensors(data))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserInputError(f"zoo model {name!r}: {path} does not fit {arch['model_name']} ({first})") from error
    return build_model(arch, network).to(map_location).eval()


# ---------------------------------------------------------------------------------------- checkpoint export


def zoo_filter(description: dict | None) -> tuple[dict | None, str]:
    """(the manifest's input_filter, a note) for a checkpoint's filter description: fixed frequency masks
    (LowPass, HighPass, BandPass) are kept; frequency dropout acts in training only (identity in eval), so it
    becomes no filter and a note saying so; class maps and anything else raise UserInputError."""
    if description is None:
        return None, ""
    name = str(description.get("class_path", "")).rpartition(".")[2]
    if name == "ClassMapFilter":
        raise UserInputError("a class-map filter (ClassMapFilter) cannot go in the zoo; it holds fixed frequency "
                             "masks (LowPass, HighPass, BandPass) or no filter")
    if name == "FrequencyDropoutFilter":
        p = (description.get("init_args") or {}).get("p")
        return None, f"trained with frequency dropout (p = {p}), a training-only filter: the zoo model has none"
    try:
        input_filter = InputFilter.from_description(description)
    except TypeError as error:
        raise UserInputError(f"input filter {description['class_path']} cannot be built ({error})") from error
    if not isinstance(input_filter, FrequencyMaskFilter):
        raise UserInputError(f"unsupported input filter {description['class_path']}; the zoo holds fixed frequency "
                             "masks (LowPass, HighPass, BandPass) or no filter")
    return input_filter.description(), ""


def resolved_config(checkpoint: Path, path: str | Path | None, model_name: str) -> Path | None:
    """The config.yaml Lightning wrote for the run: `path`, else the nearest one in the checkpoint's parent
    folders (next to checkpoints/ for a CSV logger, in the save_dir for W&B), if it is for the same model."""
    if path is not None:
        if not Path(path).is_file():
            raise UserInputError(f"no resolved config at {path}; pass the config.yaml train.py wrote for the run")
        return Path(path)
    for folder in checkpoint.resolve().parents[:4]:
        found = folder / "config.yaml"
        if found.is_file():
            config = _read_config(found)
            if ((config.get("model") or {}).get("init_args") or {}).get("model_name") == model_name:
                return found
    return None


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _read_config(path: Path | None) -> dict:
    if path is None:
        return {}
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise UserInputError(f"{path} is not a train.py config (no mapping at its top)")
    return config


def _data_description(data: dict | None) -> dict | None:
    if not data:
        return None
    description = {"datamodule": data.get("class_path"), "init_args": data.get("init_args") or {}}
    name, args = str(description["datamodule"]).rsplit(".", 1)[-1], description["init_args"]
    if name == "DigitsDataModule":
        description["test_split"] = (f"DigitsDataModule's seeded test split: {args.get('test_size', 360)} of the "
                                     f"1,797 digits, seed {args.get('seed', 0)}")
    elif name == "CIFAR10DataModule":
        description["test_split"] = "the 10,000 CIFAR-10 test images"
    return description


def read_checkpoint(checkpoint: str | Path) -> tuple[dict, dict, dict]:
    """(the file's dict, hyper_parameters, state_dict) of a checkpoint written by `python train.py fit`, read weights-only (no
    pickled object is ever built, so a crafted file cannot run code) and in today's layout (checkpoints of the
    classes that objectives and input filters replaced go through `lightning_modules.checkpoint.legacy_layout`,
    imported only for them). A missing, truncated or foreign file raises a one-line UserInputError."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserInputError(f"no checkpoint at {path}; train one with `python train.py fit --config "
                             "configs/<name>.yaml` and pass its .ckpt (by default under outputs/<project>/<run id>/"
                             "checkpoints/)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserInputError(f"{path} cannot be read as a weights-only checkpoint ({type(error).__name__}): it is "
                             "truncated, not a checkpoint, or holds pickled objects, which are never loaded") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise UserInputError(f"{path} is not a Lightning checkpoint written by train.py (no state_dict/hparams)")
    hparams, state_dict = ckpt["hyper_parameters"], ckpt["state_dict"]
    if not any(key.startswith("network.") for key in state_dict):
        from lightning_modules.checkpoint import legacy_layout

        hparams, state_dict = legacy_layout(path, ckpt)
    return ckpt, hparams, state_dict


def export_checkpoint(
    checkpoint: str | Path, name: str, directory: str | Path | None = None, *, config: str | list[str] | None = None,
    resolved: str | Path | None = None, command: str | None = None, notes: str = "",
    train_seconds: float | None = None, machine: str | None = None, git_commit: str | None = None,
    force: bool = False,
) -> dict:
    """Turn a checkpoint written by `python train.py fit` into a zoo entry: the registry network's weights
    as `<name>.safetensors` and a manifest entry (accuracy fields empty until `evaluate`). Returns the entry.

    config: the config file(s) given to train.py, recorded as they are. Seed, max_epochs and data come from
    `resolved`, the config.yaml Lightning wrote for the run (default: found beside the checkpoint, see
    `resolved_config`). machine / git_commit default to this machine and the repository's HEAD. Checkpoints of
    the classes that objectives and input filters replaced are read through `lightning_modules.checkpoint`
    (imported only for them).
    """
    path = Path(checkpoint)
    if not NAME_PATTERN.fullmatch(name):
        raise UserInputError(f"zoo name {name!r} must be lower case letters, digits, '_', '-' or '.'")
    ckpt, hparams, state_dict = read_checkpoint(path)
    missing = [k for k in ("model_name", "num_classes", "in_channels", "image_size") if k not in hparams]
    if missing:
        raise UserInputError(f"{path}: hyper-parameters lack {', '.join(missing)}")
    description, filter_note = zoo_filter(hparams.get("input_filter"))
    architecture = {k: hparams[k] for k in ("model_name", "num_classes", "in_channels", "image_size")}
    architecture["input_filter"] = description
    network = create_model(architecture["model_name"], architecture["num_classes"], architecture["in_channels"],
                           architecture["image_size"])
    try:
        network.load_state_dict({k[len("network."):]: v for k, v in state_dict.items() if k.startswith("network.")})
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserInputError(f"{path}: the weights under 'network.' do not fit {architecture['model_name']} "
                             f"({first})") from error
    data = save_safetensors({k: v.detach().contiguous().clone() for k, v in network.state_dict().items()},
                            metadata={"name": name, "model_name": architecture["model_name"]})
    if len(data) > MAX_FILE_BYTES:
        raise UserInputError(f"{name}: {len(data) / 2**20:.1f} MB of weights; zoo files are kept under "
                             f"{MAX_FILE_BYTES / 2**20:.0f} MB, so choose a smaller model")

    directory = zoo_dir(directory)
    manifest = _read_manifest(directory, create=True)
    others = [e for e in manifest["models"] if e["name"] != name]
    if len(others) < len(manifest["models"]) and not force:
        raise UserInputError(f"the zoo already has {name!r}; pass --force to replace it")
    total = len(data) + sum((directory / e["file"]).stat().st_size for e in others if (directory / e["file"]).is_file())
    if total > MAX_ZOO_BYTES:
        raise UserInputError(f"the zoo would hold {total / 2**20:.1f} MB, over its {MAX_ZOO_BYTES / 2**20:.0f} MB")

    resolved = resolved_config(path, resolved, architecture["model_name"])
    source = _read_config(resolved)
    item = {
        "name": name,
        "file": f"{name}.safetensors",
        "sha256": sha256(data),
        "architecture": architecture,
        "data": _data_description(source.get("data")),
        "training": {
            "config": [config] if isinstance(config, str) else config,
            "resolved_config": None if resolved is None else str(resolved),
            "command": command,
            "lightning_module": ckpt.get("freqmaps_lightning_module") or ckpt["hyper_parameters"].get("_class_path"),
            "checkpoint": path.name,
            "epochs": (source.get("trainer") or {}).get("max_epochs"),
            "checkpoint_epoch": ckpt.get("epoch", -1) + 1,
            "checkpoint_step": ckpt.get("global_step"),
            "seed": source.get("seed_everything"),
            "git_commit": git_commit or _git_commit(),
            "seconds": train_seconds,
            "machine": machine or _machine(),
        },
        "evaluation": None,
        "notes": " ".join(n for n in (notes, filter_note) if n),
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / item["file"]).write_bytes(data)
    manifest["models"] = [*others, item]
    _write_manifest(directory, manifest)
    return item


# ---------------------------------------------------------------------------------------------- evaluation


@dataclass
class ZooEvaluation:
    """Accuracies of a model on a test set: clean, under `attack` (correct both clean and attacked), and
    clean on the seeded subset `subset_indices(test_images, subset_size, subset_seed)`."""

    test_images: int
    clean_accuracy: float
    robust_accuracy: float
    subset_size: int
    subset_seed: int
    subset_accuracy: float
    seconds: float


def subset_indices(n: int, size: int = SUBSET_SIZE, seed: int = SUBSET_SEED) -> torch.Tensor:
    """min(size, n) distinct indices of range(n) drawn with `seed`, ascending: (k,) int64. The whole set
    when it has at most `size` images (`freqmaps.sampling.seeded_indices`, the project's one seeded draw)."""
    return seeded_indices(n, min(size, n), seed)


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def accuracy(model: nn.Module, dataset: Dataset, batch_size: int = 500) -> float:
    """Clean accuracy of `model` on a dataset of (image (C, H, W) in [0, 1], label), on the model's device."""
    device, correct = _device(model), 0
    for x, y in DataLoader(dataset, batch_size):
        correct += (predict(model, x.to(device), batch_size).cpu() == y).sum().item()
    return correct / len(dataset)


def evaluate(
    model: nn.Module, dataset: Dataset, attack: Attack | None = None, batch_size: int = 500, seed: int = 0,
    subset_size: int = SUBSET_SIZE, subset_seed: int = SUBSET_SEED, progress: bool = True,
) -> ZooEvaluation:
    """Clean and robust accuracy (default attack: PGD-20, L∞, eps 8/255, step 2/255) over the whole dataset,
    batch by batch on the model's device with a progress bar; the attack's random starts are drawn from
    `seed` (the caller's RNG state is left as it was). The model should be in eval mode."""
    attack = attack or default_attack()
    device = _device(model)
    start = time.perf_counter()
    clean, robust = [], []
    loader = DataLoader(dataset, batch_size=batch_size)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for x, y in tqdm(loader, desc="clean and PGD accuracy", disable=not progress):
            x, y = x.to(device), y.to(device)
            clean.append((predict(model, x, batch_size) == y).cpu())
            robust.append((predict(model, attack(model, x, y), batch_size) == y).cpu())
    clean, robust = torch.cat(clean), torch.cat(robust)
    subset = subset_indices(len(clean), subset_size, subset_seed)
    return ZooEvaluation(
        test_images=len(clean), clean_accuracy=clean.float().mean().item(),
        robust_accuracy=(clean & robust).float().mean().item(), subset_size=len(subset), subset_seed=subset_seed,
        subset_accuracy=clean[subset].float().mean().item(), seconds=time.perf_counter() - start,
    )


def attack_description(attack: PGD) -> dict:
    return {"name": type(attack).__name__, "norm": attack.norm, "eps": attack.eps, "step_size": attack.step_size,
            "steps": attack.steps, "random_start": attack.random_start, "restarts": attack.restarts,
            "early_stop": attack.early_stop}


# ------------------------------------------------------------------------------- test data (command line)


def extract_test_split(archive: str | Path, destination: str | Path) -> Path:
    """Extract only `test/<class>/*` of a CIFAR-10 image-folder archive (.tar.gz) into destination; returns
    destination, now holding test/<class>/*.jpg."""
    destination = Path(destination)
    with tarfile.open(archive) as tar:
        members = [m for m in tar if m.isfile() and "test" in Path(m.name).parts[:-2]]
        for member in members:
            parts = Path(member.name).parts
            target = destination.joinpath(*parts[parts.index("test"):])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    if not members:
        raise UserInputError(f"{archive} holds no test/<class>/ images")
    return destination


def load_test_split(item: dict, data_root: str | Path | None = None) -> Dataset:
    """The test split an entry was measured on. Digits: DigitsDataModule with the entry's data arguments (its
    seeded split). CIFAR-10 from `data_root`, else $FREQMAPS_CIFAR10, else data/cifar10: an image folder with
    test/<class>/*.jpg or a .tar.gz of one (its test split decoded into memory, in the order and with the decoder
    of CIFAR10DataModule(in_memory=True)), or torchvision's copy. Imports the project's datamodules, so it is for
    the command line and tests, not for the core."""
    data = item.get("data")
    if not data:
        raise UserInputError(f"zoo model {item['name']!r} records no data; export it again with --resolved-config")
    name = str(data.get("datamodule")).rsplit(".", 1)[-1]
    args = data.get("init_args") or {}
    if name == "DigitsDataModule":
        from datamodules import DigitsDataModule

        keys = ("image_size", "channels", "val_size", "test_size", "seed")
        module = DigitsDataModule(**{k: args[k] for k in keys if k in args})
    elif name == "CIFAR10DataModule":
        root = Path(data_root or os.environ.get("FREQMAPS_CIFAR10") or REPO / "data" / "cifar10")
        if root.name.endswith((".tar.gz", ".tgz")) and root.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                return _decoded_test_folder(extract_test_split(root, tmp))
        if (root / "test").is_dir():
            return _decoded_test_folder(root)
        from datamodules import CIFAR10DataModule

        module = CIFAR10DataModule(root=str(root), in_memory=True, num_workers=0)
    else:
        raise UserInputError(f"zoo model {item['name']!r}: evaluate knows digits and CIFAR-10 test data, "
                             f"not {data.get('datamodule')!r}")
    module.setup("test")
    return module.test_set


def _decoded_test_folder(root: Path) -> Dataset:
    from torchvision.datasets import ImageFolder

    from datamodules.in_memory import InMemoryImages, decode_folder

    folder = ImageFolder(str(root / "test"))
    if len(folder.classes) != 10:
        raise UserInputError(f"{root / 'test'} has {len(folder.classes)} class folders, CIFAR-10 has 10")
    return InMemoryImages(*decode_folder(folder.samples, f"decoding {root / 'test'}", 32))


# ----------------------------------------------------------------------------------------------- the CLI


def _list(args) -> None:
    def percent(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    print(f"{'name':<28} {'model':<10} {'filter':<20} {'clean':>7} {'PGD-20':>7} {'subset':>7}")
    for item in entries(args.zoo):
        arch, ev = item["architecture"], item.get("evaluation") or {}
        flt = arch.get("input_filter")
        flt = "-" if flt is None else flt["class_path"].rpartition(".")[2] + "".join(
            f" {k}={v}" for k, v in flt.get("init_args", {}).items())
        print(f"{item['name']:<28} {arch['model_name']:<10} {flt:<20} {percent(ev.get('clean_accuracy')):>7} "
              f"{percent(ev.get('robust_accuracy')):>7} {percent((ev.get('subset') or {}).get('accuracy')):>7}")


def _verify(args) -> None:
    failed = []
    for item in entries(args.zoo):
        try:
            load_model(item["name"], args.zoo)
            print(f"ok       {item['name']}  sha256 {item['sha256'][:12]}...")
        except UserInputError as error:
            print(f"FAILED   {error}")
            failed.append(item["name"])
    if failed:
        raise UserInputError(f"{len(failed)} zoo entries failed verification: {', '.join(failed)}")


def _export(args) -> None:
    item = export_checkpoint(
        args.checkpoint, args.name, args.zoo, config=args.config, resolved=args.resolved_config,
        command=args.command, notes=args.notes, train_seconds=args.train_seconds, machine=args.machine,
        git_commit=args.git_commit, force=args.force,
    )
    print(f"exported {item['name']} -> {zoo_dir(args.zoo) / item['file']} (sha256 {item['sha256'][:12]}...); "
          f"next: python -m freqmaps.zoo evaluate {item['name']}")


def _evaluate(args) -> None:
    directory = zoo_dir(args.zoo)
    item = entry(args.name, directory)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = load_model(args.name, directory, map_location=device)
    attack = default_attack()
    result = evaluate(model, load_test_split(item, args.data_root), attack, args.batch_size, args.seed)
    item["evaluation"] = {
        "test_images": result.test_images,
        "clean_accuracy": round(result.clean_accuracy, 6),
        "robust_accuracy": round(result.robust_accuracy, 6),
        "attack": {**attack_description(attack), "seed": args.seed},
        "subset": {"size": result.subset_size, "seed": result.subset_seed,
                   "accuracy": round(result.subset_accuracy, 6)},
        "seconds": round(result.seconds, 1),
        "machine": _machine(),
        "device": str(device),
        "command": "python -m freqmaps.zoo " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
    }
    manifest = _read_manifest(directory)
    manifest["models"] = [item if e["name"] == item["name"] else e for e in manifest["models"]]
    _write_manifest(directory, manifest)
    print(f"{item['name']}: clean {100 * result.clean_accuracy:.2f}%  PGD-20 (eps 8/255) "
          f"{100 * result.robust_accuracy:.2f}%  subset ({result.subset_size}) {100 * result.subset_accuracy:.2f}%"
          f"  on {result.test_images} test images, {result.seconds:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m freqmaps.zoo", description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", type=Path, default=None, help=f"zoo folder (default ${ZOO_ENV} or zoo/)")
    commands = parser.add_subparsers(dest="command_name", required=True)
    commands.add_parser("list", help="list the entries and their accuracies").set_defaults(run=_list)
    commands.add_parser("verify", help="check every weight file against its sha256").set_defaults(run=_verify)
    export = commands.add_parser("export", help="turn a train.py checkpoint into a zoo entry")
    export.add_argument("checkpoint", type=Path)
    export.add_argument("name")
    export.add_argument("--config", action="append", default=None,
                        help="a config file given to train.py, recorded (repeat for several)")
    export.add_argument("--resolved-config", type=Path, default=None,
                        help="the config.yaml Lightning wrote for the run, where seed, epochs and data are read "
                        "(default: the nearest config.yaml above the checkpoint that is for the same model)")
    export.add_argument("--command", default=None, help="the exact command that trained it")
    export.add_argument("--notes", default="")
    export.add_argument("--train-seconds", type=float, default=None, help="wall time of the training command")
    export.add_argument("--machine", default=None, help="where it trained (default: this machine)")
    export.add_argument("--git-commit", default=None, help="commit it trained at (default: git rev-parse HEAD)")
    export.add_argument("--force", action="store_true", help="replace an entry of the same name")
    export.set_defaults(run=_export)
    evaluate_ = commands.add_parser("evaluate", help="measure clean, PGD-20 and subset accuracy into the manifest")
    evaluate_.add_argument("name")
    evaluate_.add_argument("--data-root", default=None, help="CIFAR-10 image folder or .tar.gz (default "
                           "$FREQMAPS_CIFAR10, else data/cifar10)")
    evaluate_.add_argument("--batch-size", type=int, default=500)
    evaluate_.add_argument("--seed", type=int, default=0, help="seed of the attack's random starts")
    evaluate_.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    evaluate_.set_defaults(run=_evaluate)
    args = parser.parse_args(argv)
    args.argv = argv
    args.run(args)


if __name__ == "__main__":
    exit_on_user_error(main)
