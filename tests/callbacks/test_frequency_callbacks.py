"""The callbacks end to end through train.py: a 2-process DDP fit on CPU logs every metric once, from rank zero,
with the values a single process gets on the same checkpoint and probe (that one under inference mode, the
`trainer.validate` default); the W&B offline run holds the scalars, images, table and maps artifact; and a run
with the callbacks ends with the same weights (and RNG state) as one without."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from freqmaps.analysis import METRICS
from tests.train_configs import resolve
from tests.wandb_offline import child_env, offline_runs, read_offline_run, read_records
from train import main

REPO = Path(__file__).resolve().parents[2]
CALLBACKS = ("callbacks.FrequencyMapsCallback", "callbacks.RobustAccuracyCallback")
ENV = child_env()


def small_config(folder: Path, with_callbacks: bool = True, every_n_epochs: int = 1, wandb: bool = True) -> Path:
    """An override of the default job (train.py reads configs/default.yaml first) with tiny, fast analyses: a
    40-image probe in 16-image batches (the last one 8 images; under 2 processes, rank 0 gets batches 0 and 2),
    5 attack steps, at most 30 solver steps a map. wandb=False logs to CSV instead (in-process runs: W&B's
    service keeps the working directory of the first run of a process and would put later runs' logs there)."""
    kept = []
    for callback in resolve([])["trainer"]["callbacks"]:
        if callback["class_path"] in CALLBACKS:
            if not with_callbacks:
                continue
            callback["init_args"] |= {"probe_size": 40, "batch_size": 16, "every_n_epochs": every_n_epochs}
            callback["init_args"]["attack"]["init_args"]["steps"] = 5
            if callback["class_path"] == "callbacks.FrequencyMapsCallback":
                callback["init_args"]["maps"] |= {"fast_min_steps": 10, "fast_max_steps": 30}
                callback["init_args"] |= {"warm_min_steps": 5, "permutations": 20, "log_artifact": True}
        kept.append(callback)
    config = {"trainer": {"callbacks": kept}}
    if not wandb:
        config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                       "init_args": {"save_dir": "outputs"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_py(args: list[str], cwd: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=ENV, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def analysis_scalars(run) -> dict[str, list]:
    """Every scalar the two callbacks logged (their timings aside): key -> values in step order."""
    keys = {key for row in run.history for key in row
            if key.startswith(("val/freqmaps/", "val/robust/")) and key.count("/") == 2 and
            not key.endswith("seconds") and not isinstance(row[key], dict)}
    return {key: run.values(key) for key in sorted(keys)}


@pytest.mark.slow
def test_ddp_fit_logs_once_from_rank_zero_and_matches_a_single_process(tmp_path):
    config = small_config(tmp_path, every_n_epochs=2)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single.mkdir()
    train_py(["fit", "--config", str(config), "--trainer.strategy", "ddp", "--trainer.devices", "2",
              "--trainer.accelerator", "cpu", "--trainer.max_epochs", "2", "--test_after_fit", "false"], ddp)
    (checkpoint,) = (ddp / "outputs").rglob("last.ckpt")  # the weights of the last (the analysed) epoch
    train_py(["validate", "--config", str(config), "--ckpt_path", str(checkpoint), "--trainer.devices", "1",
              "--trainer.accelerator", "cpu"], single)

    (ddp_dir,) = offline_runs(ddp / "outputs")  # rank zero alone writes a run
    (single_dir,) = offline_runs(single / "outputs")
    ddp_run, single_run = read_offline_run(ddp_dir), read_offline_run(single_dir)
    ddp_values, single_values = analysis_scalars(ddp_run), analysis_scalars(single_run)
    logged = {key.split("/")[2] for row in ddp_run.history for key, value in row.items()
              if key.startswith("val/freqmaps/") and key.count("/") == 2 and not isinstance(value, dict)}
    assert logged == set(METRICS)  # the analysis vocabulary, as in analyze.py's results.json and the README
    assert {"val/robust/acc", "val/robust/clean_acc"} <= set(ddp_values)
    assert set(ddp_values) == set(single_values)
    for key, values in ddp_values.items():
        assert len(values) == 1, f"{key} logged {len(values)} times"  # one analysis (epoch 2), logged once
        assert values[0] == pytest.approx(single_values[key][0], rel=1e-5, abs=1e-6, nan_ok=True), key
    assert ddp_values["val/freqmaps/n_pairs"][0] >= 3
    assert 0 < ddp_values["val/freqmaps/clean_acc"][0] <= 1

    # images, the per-class table and the maps artifact are in the W&B run, once each
    for key in ("class_mean_maps", "radial_profiles", "idcor_interval"):
        (filenames,) = ddp_run.values(f"val/freqmaps/{key}/filenames")
        assert len(filenames) == 1 and (ddp_dir / "files" / filenames[0]).stat().st_size > 1000
    (table_path,) = ddp_run.values("val/freqmaps/per_class/path")
    table = json.loads((ddp_dir / "files" / table_path).read_text())
    assert table["columns"][:3] == ["class", "images", "clean_acc"] and len(table["data"]) == 10
    assert sum(row[1] for row in table["data"]) == 40  # every probe image once
    (log,) = ddp_dir.glob("run-*.wandb")
    artifacts = [r.artifact for r in read_records(log) if r.WhichOneof("record_type") == "artifact"]
    maps_artifacts = [a for a in artifacts if a.type == "frequency-maps"]
    assert len(maps_artifacts) == 1
    assert {entry.path for entry in maps_artifacts[0].manifest.contents} == {"essential.pt", "adversarial.pt"}


def fit_in_process(folder: Path, with_callbacks: bool, monkeypatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Two epochs of the small config in this process (analyses after both); the weights and RNG state after."""
    config = small_config(folder, with_callbacks, wandb=False)
    monkeypatch.chdir(folder)
    cli = main(["fit", "--config", str(config), "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
                "--test_after_fit", "false"])
    if with_callbacks:  # the second analysis was warm-started from the first
        assert cli.trainer.callback_metrics["val/freqmaps/essential_warm"] > 0
        assert "val/robust/acc" in cli.trainer.callback_metrics
    return {k: v.clone() for k, v in cli.model.state_dict().items()}, torch.get_rng_state()


@pytest.mark.slow
def test_a_run_with_the_callbacks_ends_with_the_same_weights_as_one_without(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    with_weights, with_rng = fit_in_process(tmp_path / "with", True, monkeypatch)
    without_weights, without_rng = fit_in_process(tmp_path / "without", False, monkeypatch)
    assert with_weights.keys() == without_weights.keys()
    for name, tensor in with_weights.items():
        assert torch.equal(tensor, without_weights[name]), name
    assert torch.equal(with_rng, without_rng)  # the analyses drew from forks of the RNG streams
