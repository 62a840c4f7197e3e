"""Exact resume: the default job (without its analysis callbacks) killed with SIGKILL after its third epoch and
resumed from its last.ckpt ends with the same weights and the same best validation accuracy as the same job run
through uninterrupted (same seed, deterministic CPU, one thread)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from tests.train_configs import REPO, resolve

# not WANDB_SERVICE: a child must not attach to (and at its exit tear down) this process's W&B service
ENV = {**{k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
       "WANDB_SILENT": "true"}
ANALYSES = ("callbacks.FrequencyMapsCallback", "callbacks.RobustAccuracyCallback")


def config(folder: Path, kill_after: int | None) -> Path:
    """configs/default.yaml for 5 epochs without the analysis callbacks, logging to CSV in `folder`; with
    kill_after, a callback that SIGKILLs the process after that epoch (0-based) ends."""
    callbacks = [c for c in resolve([])["trainer"]["callbacks"] if c["class_path"] not in ANALYSES]
    if kill_after is not None:
        callbacks.append({"class_path": "tests.reliability.killer.KillAfterEpoch",
                          "init_args": {"after_epoch": kill_after}})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"trainer": {
        "max_epochs": 5, "callbacks": callbacks,
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder)}},
        "default_root_dir": str(folder)}}))
    return path


def fit(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), "fit", "--config", str(folder / "config.yaml"),
                           *args], cwd=folder, env={**ENV, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=600)


def last_checkpoint(folder: Path) -> dict:
    """The newest last.ckpt under folder (a resumed run still writes into a new version folder)."""
    path = max(folder.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    return torch.load(path, weights_only=True)


def test_a_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    for folder, kill_after in ((whole, None), (killed, 2)):
        folder.mkdir()
        config(folder, kill_after)
    assert fit(whole).returncode == 0
    died = fit(killed)
    assert died.returncode == -signal.SIGKILL
    assert last_checkpoint(killed)["epoch"] == 2
    (ckpt,) = killed.rglob("last.ckpt")  # the killed run's
    config(killed, None)
    resumed = fit(killed, "--ckpt_path", str(ckpt))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = last_checkpoint(whole), last_checkpoint(killed)
    assert a["epoch"] == b["epoch"] == 4 and a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["state_dict"]["val_acc_best.max_value"] == b["state_dict"]["val_acc_best.max_value"]
