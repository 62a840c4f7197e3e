"""What the benchmark scripts share: the extracted CIFAR-10 copy, a trained checkpoint, timing, JSON out."""
from __future__ import annotations

import json
import os
import platform
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    import lightning as L
    from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
CIFAR10_ENV = "FREQMAPS_CIFAR10"  # a CIFAR-10 image folder, or a .tar.gz of one
DEFAULT_CIFAR10_ROOT = REPO / "data" / "cifar10"
DEFAULT_MODEL = "cifar10_resnet20"  # a zoo entry: the benchmarks run on a fresh clone with no training
RESULTS = REPO / "benchmarks" / "results"


def cifar10_root(root: Path | None = None) -> Path:
    """The image-folder CIFAR-10 (train/<class>/*.jpg, test/<class>/*.jpg) the benchmarks read.

    `root` (a script's option) when it holds the images; else $FREQMAPS_CIFAR10: that folder, or a .tar.gz of one
    extracted once into `root` (default data/cifar10); without the variable, data/cifar10 when it holds the images.
    """
    if root is not None and (Path(root) / "test").is_dir():
        return Path(root)
    target = DEFAULT_CIFAR10_ROOT if root is None else Path(root)
    source = os.environ.get(CIFAR10_ENV)
    if not source:
        if (target / "test").is_dir():
            return target
        raise FileNotFoundError(
            f"no CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg) at {target}: set {CIFAR10_ENV} to "
            "such a folder or to a .tar.gz of one, or pass the folder with the script's option (--cifar-root where "
            "it has one)")
    source = Path(source).expanduser()
    if source.is_dir():
        if not (source / "test").is_dir():
            raise FileNotFoundError(f"{CIFAR10_ENV}={source} is not a CIFAR-10 image folder (no test/<class>/ in it)")
        return source
    if not source.is_file():
        raise FileNotFoundError(f"{CIFAR10_ENV}={source}: no such folder or file")
    if not (target / "test").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(source) as tar:
                tar.extractall(target, filter="data")
        except tarfile.ReadError as error:
            raise FileNotFoundError(f"{CIFAR10_ENV}={source} is neither a folder nor a .tar.gz") from error
        if not (target / "test").is_dir():
            raise FileNotFoundError(f"{CIFAR10_ENV}={source} holds no train/ and test/ folders at its top level")
    return target


def cifar10_tensors(root: Path, split: str = "test", n: int | None = None,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of a split (all by default), the seeded draw of `freqmaps.sampling` (the images analyze.py and
    the callbacks would take): x (n, 3, 32, 32) in [0, 1], y (n,) int64."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import to_tensor

    from freqmaps.sampling import seeded_indices, take

    dataset = ImageFolder(str(root / split), transform=to_tensor)
    return take(dataset, seeded_indices(len(dataset), n or len(dataset), seed))


def load_classifier(model: str | Path = DEFAULT_MODEL) -> nn.Module:
    """A zoo model by name or the network of a `train.py` checkpoint (lightning_modules.load_classifier); CPU."""
    from lightning_modules.checkpoint import load_classifier as load

    return load(model)


def bare_trainer(**overrides) -> L.Trainer:
    """A Trainer for timing: one CPU device, no logger, checkpoints, progress bar, model summary or sanity check,
    one epoch; `overrides` are any other Trainer arguments (or replace these)."""
    import lightning as L

    return L.Trainer(**{"max_epochs": 1, "accelerator": "cpu", "devices": 1, "logger": False,
                        "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False,
                        "num_sanity_val_steps": 0, **overrides})


def fit_seconds(module: L.LightningModule, loader: DataLoader) -> float:
    """Wall time of one training epoch of `module` on `loader` under `bare_trainer` (no validation)."""
    trainer = bare_trainer(limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - start


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Smallest wall time of `repeats` calls of fn, in seconds (after one untimed warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine() -> dict:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def write_json(name: str, payload: dict, out: Path | None = None) -> Path:
    """Write payload (plus the machine description) to benchmarks/results/<name>.json or `out`."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {path}")
    return path
