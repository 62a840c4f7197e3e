"""What the per-epoch analysis callbacks cost: their share of epoch time, and solver steps warm versus cold.

    python -m benchmarks.callback_overhead [--parts default command cifar warmstart] [--epochs 3] [--train-images N]
        [--probe-size 512] [--solver fast|paper] [--autocast] [--min-steps 500] [--max-steps 5000]
        [--warm-min-steps 20] [--num-workers 2]
        [--checkpoint ZOO_NAME|PATH] [--warmup-epochs 0] [--cifar-root data/cifar10] [--out PATH]

default: the whole default job (`python train.py fit --config configs/default.yaml`: 8 epochs on the digits and
  the test after fit) with its callbacks, with them on NCHW kernels (`channels_last: false`), then the same
  config with the two callbacks removed (the baseline), in this process, after an untimed fast_dev_run that pays
  the one-time start-up costs. Prints the wall times, the analyses' own time (their logged `seconds`) and its
  share of the run with them.
command: the same job as a user runs it, `python train.py fit ...` in a fresh process (start-up included), with
  and without the two callbacks.
cifar: ResNet-20 on CIFAR-10 (configs/cifar10_resnet20.yaml's model, data and callbacks) with both callbacks at a
  `--probe-size` probe every epoch, for `--epochs` epochs, then the same epochs without them (the baseline).
  Per epoch: wall time (training + validation + analyses) and the share the callbacks take. Beside the
  warm-started FrequencyMapsCallback runs a cold twin (`warm_start: false`, name `freqmaps_cold`) on the same
  probe and model: from the second epoch on, the ratio of their solver steps is the warm-start saving (the
  twin's time is taken out of the epoch time). The timed fits start from `--checkpoint`'s network (if any)
  trained `--warmup-epochs` more epochs without the callbacks (a model past its first epochs changes less
  between analyses, as over most of a 200-epoch run). Built without the CLI and without a logger, so it also
  runs where W&B and jsonargparse are not installed. On a CPU, cap it: `--train-images` (training images per epoch),
  `--probe-size`; `--solver` (the fast rule by default, as the configs' callbacks), `--min-steps` /
  `--max-steps` (the paper rule's, 500 / 5000).
warmstart: the default job's model and data for its 8 epochs (cosine decay), with configs/default.yaml's
  FrequencyMapsCallback under `--solver` (`--min-steps`, `--max-steps` for the paper's; `--warm-min-steps`) after
  epochs 4 and 8, beside its cold twin: solver steps and seconds of the epoch-8 analysis, warm versus cold.

Writes benchmarks/results/callback_overhead.json.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
import time
from dataclasses import fields
from functools import partial
from pathlib import Path

import lightning as L
import torch
import yaml

from benchmarks.common import DEFAULT_MODEL, REPO, bare_trainer, cifar10_root, load_classifier, write_json
from callbacks.probe import ProbeCallback
from freqmaps.maps import MapSettings

CALLBACKS = ("callbacks.FrequencyMapsCallback", "callbacks.RobustAccuracyCallback")


class EpochClock(L.Callback):
    """Wall time of each fit epoch (training start to the end of validation, analyses included) and the
    `seconds` each probe callback logged in it (it must come after them in the callback list)."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        ran = [cb.name for cb in trainer.callbacks
               if isinstance(cb, ProbeCallback) and (trainer.current_epoch + 1) % cb.every_n_epochs == 0]
        metrics = {key: float(value) for key, value in trainer.callback_metrics.items()
                   if key.split("/")[1:2] and key.split("/")[1] in ran}
        self.epochs.append({"epoch": trainer.current_epoch, "seconds": time.perf_counter() - self._start,
                            "callback_seconds": {name: metrics.get(f"val/{name}/seconds", 0.0) for name in ran},
                            "metrics": metrics})


def instantiate(spec):
    """A `class_path` / `init_args` dict (as in a config) -> the object, nested specs included."""
    if isinstance(spec, dict) and "class_path" in spec:
        module, name = spec["class_path"].rsplit(".", 1)
        args = {key: instantiate(value) for key, value in (spec.get("init_args") or {}).items()}
        return getattr(importlib.import_module(module), name)(**args)
    return spec


def maps_callback(spec: dict, **changes) -> L.Callback:
    """A config's FrequencyMapsCallback spec built with `changes` to its init_args; MapSettings fields
    (min_steps, max_steps, ...) change its nested `maps`."""
    solver = {f.name for f in fields(MapSettings)}
    args = {**spec["init_args"], **{key: value for key, value in changes.items() if key not in solver}}
    args["maps"] = MapSettings(**{**spec["init_args"].get("maps", {}),
                                  **{key: value for key, value in changes.items() if key in solver}})
    return instantiate({**spec, "init_args": args})


def read_parts(folder: Path, value):
    """`value` (from a config in `folder`) with every string ending in .yaml replaced by the config part it names,
    relative to the file naming it, recursively."""
    if isinstance(value, str) and value.endswith(".yaml"):
        path = folder / value
        return read_parts(path.parent, yaml.safe_load(path.read_text()))
    if isinstance(value, dict):
        return {key: read_parts(folder, item) for key, item in value.items()}
    if isinstance(value, list):
        return [read_parts(folder, item) for item in value]
    return value


def callback_specs(config: Path) -> list[dict]:
    """The trainer.callbacks of a config, each a `class_path` / `init_args` dict with its parts read in."""
    return read_parts(config.parent, yaml.safe_load(config.read_text())["trainer"]["callbacks"])


def config_without_callbacks(config: Path, folder: Path) -> Path:
    """A config to read after `config` that keeps its callbacks but the two analysis callbacks."""
    kept = [spec for spec in callback_specs(config) if spec["class_path"] not in CALLBACKS]
    path = folder / f"{config.stem}_without_callbacks.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": kept}}))
    return path


def config_with_changed_callbacks(config: Path, folder: Path, label: str, **changes) -> Path:
    """A config to read after `config` whose two analysis callbacks get the init arguments `changes`."""
    specs = [{**spec, "init_args": {**spec.get("init_args", {}), **changes}} if spec["class_path"] in CALLBACKS
             else spec for spec in callback_specs(config)]
    path = folder / f"{config.stem}_{label}.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": specs}}))
    return path


def default_part() -> dict:
    """The whole default job with the callbacks, with them on NCHW kernels (`channels_last: false`) and without
    them (wall time, in this process, under a temp dir)."""
    import wandb

    from train import main

    config = REPO / "configs" / "default.yaml"
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        here, argv = os.getcwd(), sys.argv
        os.chdir(folder)
        sys.argv = ["train.py"]  # LightningCLI reads sys.argv too; the arguments are given to main()
        try:
            without = config_without_callbacks(config, Path(folder))
            # a fast_dev_run first pays the one-time costs (imports, W&B start-up) that would otherwise fall on
            # whichever timed run came first
            main(["fit", "--config", str(config), "--trainer.fast_dev_run", "true"])
            wandb.finish()
            nchw = config_with_changed_callbacks(config, Path(folder), "nchw", channels_last=False)
            runs = {"with_callbacks": [config], "with_callbacks_nchw": [config, nchw],
                    "without_callbacks": [config, without]}
            for label, paths in runs.items():
                start = time.perf_counter()
                cli = main(["fit", *(arg for path in paths for arg in ("--config", str(path))),
                            "--trainer.callbacks+=benchmarks.callback_overhead.EpochClock"])
                seconds = time.perf_counter() - start
                wandb.finish()
                # the CLI imports benchmarks.callback_overhead: not this module's class when run with python -m
                (clock,) = [c for c in cli.trainer.callbacks if type(c).__name__ == EpochClock.__name__]
                test_seconds = sum(float(v) for k, v in cli.trainer.callback_metrics.items()
                                   if k.startswith("test/") and k.endswith("/seconds"))
                result[label] = {"seconds": seconds, "epochs": clock.epochs, "test_callback_seconds": test_seconds,
                                 "test_acc": float(cli.trainer.callback_metrics["test/acc"])}
                print(f"default job {label.replace('_', ' ')}: {seconds:.1f} s")
        finally:
            os.chdir(here)
            sys.argv = argv
    with_ = result["with_callbacks"]
    analyses = sum(sum(e["callback_seconds"].values()) for e in with_["epochs"]) + with_["test_callback_seconds"]
    result["callback_seconds"] = analyses
    result["callback_share"] = analyses / with_["seconds"]
    baseline = result["without_callbacks"]["seconds"]
    result["ratio_with_over_without"] = with_["seconds"] / baseline
    result["ratio_nchw_over_without"] = result["with_callbacks_nchw"]["seconds"] / baseline
    print(f"default job: analyses {analyses:.1f} s = {result['callback_share']:.0%} of the run with them; "
          f"with / without: {result['ratio_with_over_without']:.2f} (NCHW kernels: "
          f"{result['ratio_nchw_over_without']:.2f})")
    return result


def command_part() -> dict:
    """`python train.py fit --config configs/default.yaml` as a user runs it (a fresh process: imports, W&B
    start-up, the fit and the test), with and without the two callbacks: wall time of each command."""
    import subprocess

    config = REPO / "configs" / "default.yaml"
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        without = config_without_callbacks(config, Path(folder))
        for label, paths in {"with_callbacks": [config], "without_callbacks": [config, without]}.items():
            command = [sys.executable, str(REPO / "train.py"), "fit",
                       *(arg for path in paths for arg in ("--config", str(path))),
                       "--trainer.default_root_dir", str(Path(folder) / label)]
            start = time.perf_counter()
            subprocess.run(command, cwd=folder, check=True, capture_output=True)
            result[label] = {"seconds": time.perf_counter() - start}
            print(f"command {label.replace('_', ' ')}: {result[label]['seconds']:.1f} s")
    result["ratio_with_over_without"] = result["with_callbacks"]["seconds"] / result["without_callbacks"]["seconds"]
    print(f"default job as a command: with / without: {result['ratio_with_over_without']:.2f}")
    return result


def cifar_callbacks(args: argparse.Namespace) -> list[L.Callback]:
    """configs/cifar10_resnet20.yaml's two callbacks at a --probe-size probe every epoch, plus the cold twin."""
    specs = {c["class_path"]: c for c in callback_specs(REPO / "configs" / "cifar10_resnet20.yaml")}
    common = {"probe_size": args.probe_size, "every_n_epochs": 1}
    solver = {"solver": args.solver, "autocast": args.autocast, "min_steps": args.min_steps,
              "max_steps": args.max_steps, "warm_min_steps": args.warm_min_steps, "log_artifact": False}
    maps_spec = specs["callbacks.FrequencyMapsCallback"]
    robust_spec = specs["callbacks.RobustAccuracyCallback"]
    warm = maps_callback(maps_spec, **common, **solver)
    cold = maps_callback(maps_spec, **common, **solver, warm_start=False, name="freqmaps_cold")
    robust = instantiate({**robust_spec, "init_args": {**robust_spec["init_args"], **common}})
    return [warm, robust, cold]


def timed_fit(model: L.LightningModule, data: L.LightningDataModule, epochs: int, callbacks: list[L.Callback],
              limit_train_batches: float | int = 1.0) -> EpochClock:
    """Fit under `bare_trainer` (on the accelerator there is); returns the epoch clock (the last callback)."""
    clock = EpochClock()
    trainer = bare_trainer(max_epochs=epochs, accelerator="auto", limit_train_batches=limit_train_batches,
                           callbacks=[*callbacks, clock])
    trainer.fit(model, data)
    return clock


def cifar_fit(args: argparse.Namespace, epochs: int, callbacks: list[L.Callback],
              start: dict[str, torch.Tensor] | None) -> tuple[EpochClock, dict[str, torch.Tensor]]:
    """ResNet-20 on CIFAR-10 as in configs/cifar10_resnet20.yaml (SGD lr 0.1, momentum 0.9, wd 1e-4, batch 64,
    crop + flip) for `epochs` epochs from the network weights `start` (None: fresh); returns the epoch clock and
    the final network weights."""
    from datamodules import CIFAR10DataModule
    from lightning_modules import StandardClassifier

    L.seed_everything(0)
    data = CIFAR10DataModule(root=str(args.cifar_root), random_crop=True, horizontal_flip=True, val_size=5000,
                             batch_size=64, num_workers=args.num_workers, seed=0)
    model = StandardClassifier("resnet20", 10, 3, 32, optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9,
                                                                          weight_decay=1e-4))
    if start is not None:
        model.model.load_state_dict(start)
    limit = 1.0 if args.train_images is None else max(1, math.ceil(args.train_images / 64))
    clock = timed_fit(model, data, epochs, callbacks, limit)
    return clock, {k: v.detach().cpu().clone() for k, v in model.model.state_dict().items()}


def start_weights(args: argparse.Namespace) -> dict[str, torch.Tensor] | None:
    """The network weights the timed fits start from: --checkpoint's, then --warmup-epochs of training."""
    start = None
    if args.checkpoint is not None:
        start = load_classifier(args.checkpoint).state_dict()
        print(f"starting from {args.checkpoint}")
    if args.warmup_epochs:
        _, start = cifar_fit(args, args.warmup_epochs, [], start)
        print(f"trained {args.warmup_epochs} warm-up epochs without the callbacks")
    return start


def solver_steps(metrics: dict[str, float], name: str) -> float:
    """Total solver steps of one analysis: mean steps x maps solved, both kinds (a kind with no map: 0)."""
    total = 0.0
    for kind in ("essential", "adversarial"):
        maps = metrics.get(f"val/{name}/{kind}_maps", 0.0)
        total += metrics[f"val/{name}/{kind}_steps"] * maps if maps else 0.0
    return total


def cifar_part(args: argparse.Namespace) -> dict:
    args.cifar_root = cifar10_root(args.cifar_root)
    start = start_weights(args)
    with_clock, _ = cifar_fit(args, args.epochs, cifar_callbacks(args), start)
    without_clock, _ = cifar_fit(args, args.epochs, [], start)
    epochs = []
    for with_, without in zip(with_clock.epochs, without_clock.epochs):
        cold = with_["callback_seconds"].get("freqmaps_cold", 0.0)
        analyses = with_["callback_seconds"].get("freqmaps", 0.0) + with_["callback_seconds"].get("robust", 0.0)
        epoch_seconds = with_["seconds"] - cold
        metrics = with_["metrics"]
        steps = {name: solver_steps(metrics, name) for name in ("freqmaps", "freqmaps_cold")}
        epochs.append({
            "epoch": with_["epoch"], "seconds_with": epoch_seconds, "seconds_without": without["seconds"],
            "callback_seconds": with_["callback_seconds"], "callback_share": analyses / epoch_seconds,
            "solver_steps_warm": steps["freqmaps"], "solver_steps_cold": steps["freqmaps_cold"],
            "metrics": metrics,
        })
        seconds = with_["callback_seconds"]
        print(f"cifar epoch {with_['epoch']}: {epoch_seconds:.1f} s with the callbacks (freqmaps "
              f"{seconds.get('freqmaps', 0):.1f} s, robust {seconds.get('robust', 0):.1f} s: "
              f"{analyses / epoch_seconds:.0%}), {without['seconds']:.1f} s without; cold twin {cold:.1f} s; "
              f"solver steps warm {steps['freqmaps']:.0f}, cold {steps['freqmaps_cold']:.0f}")
    later = epochs[1:]
    warm_steps = sum(e["solver_steps_warm"] for e in later)
    cold_steps = sum(e["solver_steps_cold"] for e in later)
    result = {
        "epochs": epochs,
        "callback_share_mean": sum(e["callback_share"] for e in epochs) / len(epochs),
        "warm_start_step_ratio": cold_steps / warm_steps if warm_steps else math.nan,
    }
    print(f"cifar: callbacks take {result['callback_share_mean']:.0%} of an epoch on average; warm start cuts "
          f"solver steps {result['warm_start_step_ratio']:.2f}x (epochs 2+)")
    return result


def warmstart_part(args: argparse.Namespace) -> dict:
    """The default job's model and data (small CNN, digits, Adam 3e-3 with cosine decay over 8 epochs), 8 epochs,
    with configs/default.yaml's FrequencyMapsCallback (64-image probe) at --min-steps / --max-steps /
    --warm-min-steps every 4 epochs, beside its cold twin: solver steps of the epoch-8 analysis, warm vs cold."""
    from datamodules import DigitsDataModule
    from lightning_modules import StandardClassifier

    (spec,) = [c for c in callback_specs(REPO / "configs" / "default.yaml")
               if c["class_path"] == "callbacks.FrequencyMapsCallback"]
    changes = {"every_n_epochs": 4, "solver": args.solver, "autocast": args.autocast, "min_steps": args.min_steps,
               "max_steps": args.max_steps, "warm_min_steps": args.warm_min_steps}
    warm = maps_callback(spec, **changes)
    cold = maps_callback(spec, **changes, warm_start=False, name="freqmaps_cold")
    L.seed_everything(0)
    model = StandardClassifier("small_cnn", 10, 1, 32, optimizer=partial(torch.optim.Adam, lr=3e-3),
                               lr_scheduler=partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=8))
    clock = timed_fit(model, DigitsDataModule(batch_size=64), 8, [warm, cold])
    metrics = clock.epochs[-1]["metrics"]
    steps = {name: solver_steps(metrics, name) for name in ("freqmaps", "freqmaps_cold")}
    result = {"probe_size": warm.probe_size, "settings": {**spec["init_args"], **changes},
              "analyses": [e for e in clock.epochs if e["metrics"]],
              "solver_steps_warm": steps["freqmaps"], "solver_steps_cold": steps["freqmaps_cold"],
              "warm_start_step_ratio": steps["freqmaps_cold"] / steps["freqmaps"],
              "seconds_warm": clock.epochs[-1]["callback_seconds"]["freqmaps"],
              "seconds_cold": clock.epochs[-1]["callback_seconds"]["freqmaps_cold"]}
    print(f"digits epoch 8: solver steps warm {steps['freqmaps']:.0f} ({result['seconds_warm']:.1f} s), cold "
          f"{steps['freqmaps_cold']:.0f} ({result['seconds_cold']:.1f} s): warm start cuts solver steps "
          f"{result['warm_start_step_ratio']:.2f}x")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", choices=("default", "command", "cifar", "warmstart"),
                        default=["default", "command", "cifar", "warmstart"])
    parser.add_argument("--epochs", type=int, default=3, help="cifar: epochs (>= 2 for the warm-start ratio)")
    parser.add_argument("--train-images", type=int, default=None, help="cifar: cap on training images per epoch")
    parser.add_argument("--probe-size", type=int, default=512)
    parser.add_argument("--solver", choices=("paper", "fast"), default="fast",
                        help="cifar, warmstart: the map solver (default.yaml's own for the default part)")
    parser.add_argument("--autocast", action="store_true", help="cifar, warmstart: bf16 autocast in the solver")
    parser.add_argument("--min-steps", type=int, default=500, help="cifar, warmstart: the paper rule's")
    parser.add_argument("--max-steps", type=int, default=5000, help="cifar, warmstart: the paper rule's")
    parser.add_argument("--warm-min-steps", type=int, default=20)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--checkpoint", default=DEFAULT_MODEL,
                        help="cifar: start from this zoo model's (or Lightning checkpoint's) network")
    parser.add_argument("--warmup-epochs", type=int, default=0, help="cifar: epochs trained without the callbacks "
                                                                      "before the timed ones")
    parser.add_argument("--cifar-root", type=Path, default=REPO / "data" / "cifar10")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    payload = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    if "default" in args.parts:
        payload["default"] = default_part()
    if "command" in args.parts:
        payload["command"] = command_part()
    if "cifar" in args.parts:
        payload["cifar"] = cifar_part(args)
    if "warmstart" in args.parts:
        payload["warmstart"] = warmstart_part(args)
    payload["load_average_before_after"] = [load_before, os.getloadavg()[0]]
    write_json("callback_overhead", payload, args.out)


if __name__ == "__main__":
    main()
