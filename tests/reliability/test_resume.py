"""Exact resume: the default job (3 epochs, without its analysis callbacks, logging to W&B offline under a
`--trainer.default_root_dir`) SIGKILLed after its first epoch and resumed with `train.py fit --resume <run
folder>` continues in the same run folder and W&B run id and ends with the same weights and the same best
validation accuracy as the same job run through uninterrupted (same seed, deterministic CPU, one thread). A
resumed fit's analysis callback warm-starts from the maps in the checkpoint; `--ckpt_path last` and a run folder
without a last checkpoint are refused with one line."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from callbacks import FrequencyMapsCallback
from freqmaps.errors import UserInputError
from lightning_modules.atomic_checkpoint import AtomicCheckpointIO
from tests.callbacks.test_frequency_callbacks import small_config
from tests.train_configs import REPO, resolve
from tests.wandb_offline import child_env
from train import main

ENV = child_env(PYTHONPATH=str(REPO))
ANALYSES = ("callbacks.FrequencyMapsCallback", "callbacks.RobustAccuracyCallback")


def config(path: Path, kill_after: int | None) -> Path:
    """configs/default.yaml for 3 epochs without the analysis callbacks; with kill_after, a callback that
    SIGKILLs a fit that did not resume after that epoch (0-based) ends."""
    callbacks = [c for c in resolve([])["trainer"]["callbacks"] if c["class_path"] not in ANALYSES]
    if kill_after is not None:
        callbacks.append({"class_path": "tests.reliability.killer.KillAfterEpoch",
                          "init_args": {"after_epoch": kill_after}})
    path.write_text(yaml.safe_dump({"trainer": {"max_epochs": 3, "callbacks": callbacks}}))
    return path


def train_py(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), "fit", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600)


def run_folders(root: Path) -> list[Path]:
    """The run folders under a default_root_dir: <root>/freqmaps/<W&B run id> (the W&B project's name)."""
    return sorted(p for p in (root / "freqmaps").iterdir() if p.is_dir())


def last_checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.mark.slow
def test_a_killed_fit_resumes_to_the_uninterrupted_result(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"  # default_root_dirs; every run starts in tmp_path
    assert train_py(tmp_path, "--config", str(config(tmp_path / "whole.yaml", None)),
                    "--trainer.default_root_dir", str(whole)).returncode == 0
    died = train_py(tmp_path, "--config", str(config(tmp_path / "killed.yaml", 0)),
                    "--trainer.default_root_dir", str(killed))
    assert died.returncode == -signal.SIGKILL
    (run,) = run_folders(killed)
    assert last_checkpoint(run)["epoch"] == 0 and (run / "config.yaml").is_file()

    resumed = train_py(tmp_path, "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_folders(killed) == [run]  # the same run folder, no second one
    offline = sorted(p.name for p in (killed / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(name.endswith(f"-{run.name}") for name in offline)  # one W&B run id
    (other,) = run_folders(whole)
    a, b = last_checkpoint(other), last_checkpoint(run)
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    assert a["state_dict"]["val_acc_best.max_value"] == b["state_dict"]["val_acc_best.max_value"]


@pytest.mark.slow
def test_a_resumed_fit_warm_starts_its_analysis_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(tmp_path)
    cfg = str(small_config(tmp_path, wandb=False))
    first = main(["fit", "--config", cfg, "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
                  "--test_after_fit", "false"])
    assert isinstance(first.trainer.strategy.checkpoint_io, AtomicCheckpointIO)  # the default config's plugin
    assert first.trainer.callback_metrics["val/freqmaps/essential_warm"] == 0  # a first analysis starts cold
    last = first.trainer.checkpoint_callback.last_model_path
    saved = torch.load(last, weights_only=True)["callbacks"]
    maps = saved["FrequencyMapsCallback{'name': 'freqmaps'}"]["previous"]["val"]  # per metric group
    assert [m["kind"] for m in maps] == ["essential", "adversarial"] and len(maps[0]["maps"]) > 0
    resumed = main(["fit", "--config", cfg, "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
                    "--test_after_fit", "false", "--ckpt_path", last])
    assert resumed.trainer.callback_metrics["val/freqmaps/essential_warm"] > 0
    (callback,) = [c for c in resumed.trainer.callbacks if isinstance(c, FrequencyMapsCallback)]
    curve = callback.state_dict()["curve"]["val"]  # the IdCor curve goes on from the checkpoint's
    assert [point["epoch"] for point in curve] == [0.0, 1.0]
    assert curve[0]["idcor"] == pytest.approx(float(first.trainer.callback_metrics["val/freqmaps/idcor"]), nan_ok=True)


@pytest.mark.parametrize("args, message", [
    (["--ckpt_path", "last"], "--ckpt_path last would look in a new run folder"),
    (["--resume", "no_such_run"], r"no no_such_run/checkpoints/last\.ckpt"),
])
def test_resume_without_a_run_is_refused(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=message):
        main(["fit", *args])
