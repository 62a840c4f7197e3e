"""One analysis, two front ends: FrequencyMapsCallback in a `trainer.validate` and analyze.py's `analyze` on the same
model, images and settings give the same scalars, and results.json, the README's "Metrics" table and the
vocabulary (`freqmaps.analysis.METRICS`) name the same metrics."""
from __future__ import annotations

import json
import re
from pathlib import Path

import lightning as L
import pytest

import analyze
from callbacks import FrequencyMapsCallback
from datamodules import DigitsDataModule
from freqmaps.analysis import METRICS
from freqmaps.attacks import PGD
from freqmaps.maps import MapSettings
from lightning_modules import StandardClassifier

REPO = Path(__file__).resolve().parents[1]
SETTINGS = MapSettings(lam=0.1, lr=0.05, min_steps=10, max_steps=30, batch_size=64)
PROBE, SEED = 40, 3


def attack() -> PGD:
    return PGD(eps=0.1, norm="linf", steps=5, random_start=True)


def readme_metrics() -> set[str]:
    """The metric names in the first column of the README's "Metrics" table."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n### Metrics\n"):]
    table = section[section.index("\n| metric |"):].split("\n\n")[0]
    return {name for line in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", line.split("|")[1])}


@pytest.fixture(scope="module")
def callback_and_checkpoint(digits_cnn, tmp_path_factory) -> tuple[dict[str, float], Path]:
    """The callback's scalars on the validation digits of the conftest model, and that model as a checkpoint."""
    module = StandardClassifier("small_cnn", 10, 1, 32)
    module.network.load_state_dict(digits_cnn.model.state_dict())
    callback = FrequencyMapsCallback(probe_size=PROBE, batch_size=PROBE, attack=attack(), maps=SETTINGS,
                                     permutations=20, seed=SEED, log_images=False, log_table=False,
                                     channels_last=False)  # analyze.py's arithmetic: NCHW kernels (channels-last
    # kernels move the values by float rounding only: tests/freqmaps/test_channels_last.py)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.validate(module, datamodule=DigitsDataModule(image_size=32, channels=1), verbose=False)
    path = tmp_path_factory.mktemp("one_analysis") / "digits.ckpt"
    trainer.save_checkpoint(path)
    scalars = {key.removeprefix("val/freqmaps/"): float(value) for key, value in trainer.callback_metrics.items()
               if key.startswith("val/freqmaps/")}
    return scalars, path


def test_callback_and_analyze_give_the_same_scalars(callback_and_checkpoint, tmp_path):
    logged, checkpoint = callback_and_checkpoint
    out = tmp_path / "results"
    analyze.analyze(checkpoint, DigitsDataModule(image_size=32, channels=1), [attack()], output_dir=out,
                    images=PROBE, split="val", maps=SETTINGS, permutations=20, resamples=200, power_simulations=0,
                    seed=SEED, attack_batch_size=PROBE,
                    device="cpu", wandb_project=None, progress=False)
    results = json.loads((out / "results.json").read_text())
    (row,) = results["rows"]
    assert set(logged) == set(METRICS) == set(row) - {"attack"} == readme_metrics()
    assert logged["n_pairs"] >= 3 and 0 < logged["success_rate"] < 1  # a real comparison, correlation included
    for name in METRICS:
        if name.endswith("seconds"):
            continue
        value = float("nan") if row[name] is None else row[name]  # results.json writes nan as null
        assert value == pytest.approx(logged[name], abs=1e-6, nan_ok=True), name
