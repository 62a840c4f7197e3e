"""The CLI end to end: every experiment config trains with the command its header documents (fast_dev_run), the
default job reaches its accuracy and leaves a real W&B offline run and a checkpoint in the documented layout, and
user mistakes give one-line errors instead of tracebacks."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.train_configs import EXPERIMENTS, REPO, documented_args, needs_cifar10, needs_imagenette
from tests.wandb_offline import offline_runs, read_offline_run
from train import main


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run from an empty folder so outputs/ (checkpoints, W&B runs) land in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    return tmp_path


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.name)
def test_every_config_runs_fast_dev_run(config, in_tmp, request):
    """Only the configs whose command needs a CIFAR-10 folder ask for one (and skip without the archive); the
    224-px Imagenette configs run on a generated 224-px image folder."""
    args = documented_args(config)
    if needs_cifar10(config):
        args = [*documented_args(config, request.getfixturevalue("cifar10_few")),
                "--data.val_size", "20", "--data.num_workers", "0"]
    elif needs_imagenette(config):
        args = [*documented_args(config, imagenette_root=request.getfixturevalue("imagenette_tiny")),
                "--data.val_size", "2", "--data.num_workers", "0", "--data.batch_size", "4"]
    cli = main(["fit", *args,
                "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu", "--trainer.devices", "1"])
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert math.isfinite(metrics["test/loss"].item())  # the test after fit ran too
    assert 0.0 <= metrics["test/acc"].item() <= 1.0
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes  # linked, not repeated


def test_default_job_reaches_accuracy_and_logs_offline_run(in_tmp):
    import wandb

    cli = main(["fit", "--config", str(REPO / "configs" / "default.yaml")])
    wandb.finish()
    epochs = cli.trainer.max_epochs
    (run_dir,) = offline_runs(in_tmp / "outputs")
    run = read_offline_run(run_dir)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best"):
        assert len(run.values(key)) == epochs, key
    assert run.values("train/loss")[-1] < run.values("train/loss")[0]
    assert run.values("test/acc")[-1] >= 0.95
    assert run.values("val/acc_best")[-1] == max(run.values("val/acc"))
    assert run.config["config"]["model"]["init_args"]["model_name"] == "small_cnn"
    checkpoints = list((in_tmp / "outputs").rglob("*.ckpt"))
    assert any(c.name == "last.ckpt" for c in checkpoints)
    state = torch.load(next(c for c in checkpoints if c.name == "last.ckpt"), weights_only=True)  # plain data
    hparams = state["hyper_parameters"]
    assert (hparams["model_name"], hparams["num_classes"], hparams["in_channels"], hparams["image_size"]) == (
        "small_cnn", 10, 1, 32)
    assert hparams["pretrained"] is False and hparams["input_filter"] is None
    assert {key.split(".")[0] for key in state["state_dict"]} == {"network", "val_acc_best"}
    assert state["state_dict"]["val_acc_best.max_value"] == max(run.values("val/acc"))  # travels for a resume


def test_print_config_resolves_links_and_interpolation(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs" / "default.yaml"), "--trainer.max_epochs", "5",
              "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["lr_scheduler"]["init_args"]["T_max"] == 5  # ${trainer.max_epochs}


@pytest.mark.parametrize(
    "config, args, message",
    [
        ("cifar10_resnet20.yaml", ["--data.root", "/nonexistent/cifar"],
         "no CIFAR-10 under /nonexistent/cifar. Expected either an image folder"),
        ("default.yaml", ["--data.batch_size", "0"], "data.batch_size must be >= 1"),
        ("default.yaml", ["--model.model_name", "resnet99"], "resnet99"),
        ("default.yaml", ["--trainer.max_epochs", "many"], "max_epochs"),
        ("digits_pgd_at.yaml", ["--model.init_args.objective.init_args.attack", "freqmaps.attacks.trades.TRADES"],
         "does not correspond to a subclass of PGD"),
        ("digits_fast_fgsm.yaml", ["--model.init_args.objective.init_args.attack.init_args.random_start", "false"],
         "error: FastFGSMTraining needs an FGSM attack with random_start: true"),
        ("digits_lowpass.yaml", ["--model.init_args.input_filter", "freqmaps.filters.ClassMapFilter",
                                 "--model.init_args.input_filter.maps_file", "/nonexistent/maps.pt"],
         "error: no class-maps file at /nonexistent/maps.pt"),
    ],
)
def test_user_mistakes_give_clear_errors(config, args, message, in_tmp):
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", "--config", str(REPO / "configs" / config), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
