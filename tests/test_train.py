"""The CLI end to end: every config trains (fast_dev_run), the default job reaches its accuracy and leaves a
real W&B offline run, and user mistakes give one-line errors instead of tracebacks."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.wandb_offline import offline_runs, read_offline_run
from train import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not p.name.endswith("_analyze.yaml"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run from an empty folder so outputs/ (checkpoints, W&B runs) land in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    return tmp_path


def data_overrides(config: Path, cifar10_root: Path) -> list[str]:
    """Point configs that read data from disk at the small CIFAR-10 folder."""
    data = yaml.safe_load(config.read_text())["data"]["class_path"]
    if data.endswith("CIFAR10DataModule"):
        return ["--data.root", str(cifar10_root), "--data.val_size", "20", "--data.num_workers", "0"]
    return []


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_config_runs_fast_dev_run(config, in_tmp, cifar10_few):
    cli = main(["fit", "--config", str(config), *data_overrides(config, cifar10_few),
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
    state = torch.load(next(c for c in checkpoints if c.name == "last.ckpt"), weights_only=False)
    assert state["hyper_parameters"]["model_name"] == "small_cnn"


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
