"""The reproduction pipeline on the embedded digits, end to end: a trained checkpoint in, a results folder
(table, figures, maps) and an offline W&B run out; user mistakes give one-line errors."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from datamodules import DigitsDataModule
from freqmaps.analysis import METRICS
from freqmaps.maps import FrequencyMaps
from freqmaps.report import write_report
from freqmaps.sampling import seeded_indices, take
from freqmaps.study import ROW_FIELDS
from lightning_modules import StandardClassifier, load_network
from tests.test_one_analysis import readme_metrics
from tests.wandb_offline import offline_runs, read_offline_run

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "reproduce" / "digits_analyze.yaml"


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """A small CNN trained for 4 epochs on the digits by Lightning, saved as train.py saves it."""
    L.seed_everything(0)
    module = StandardClassifier("small_cnn", 10, 1, 32)
    data = DigitsDataModule(image_size=32, channels=1)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, data)
    path = tmp_path_factory.mktemp("digits") / "digits.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_loads_back_the_trained_network(digits_checkpoint):
    network = load_network(digits_checkpoint)
    data = DigitsDataModule(image_size=32, channels=1)
    data.setup("test")
    x, y = take(data.test_set, seeded_indices(len(data.test_set), 200, 0))
    with torch.no_grad():
        assert (network(x).argmax(1) == y).float().mean() > 0.9
    assert not network.training


def test_digits_pipeline_writes_table_figures_maps_and_wandb_run(digits_checkpoint, tmp_path):
    out = tmp_path / "results"
    # a subprocess, as users run it (and W&B's service keeps the first run's working directory per process)
    result = subprocess.run([
        sys.executable, str(REPO / "analyze.py"),
        "--config", str(CONFIG), "--checkpoint", str(digits_checkpoint), "--output_dir", str(out),
        "--images", "30", "--maps.min_steps", "50", "--maps.max_steps", "150", "--permutations", "20",
        "--resamples", "50", "--power_simulations", "5",
        "--class_map_images", "40", "--class_maps.min_steps", "20", "--class_maps.max_steps", "40",
        "--adaptive_attack.init_args.steps", "5", "--progress", "false",
    ], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    rows = {row["attack"]: row for row in results["rows"]}
    assert list(rows) == ["FMN-linf", "PGD-linf", "DeepFool-linf"]
    for row in rows.values():
        assert list(row) == list(ROW_FIELDS) and set(ROW_FIELDS) - {"attack"} == set(METRICS) == readme_metrics()
        assert row["images"] == 30 and row["correct"] >= 27 and row["essential_maps"] == row["correct"]
        assert row["fooled"] <= row["correct"] and row["adversarial_maps"] == row["fooled"]
        assert row["adversarial_kept"] is None if row["fooled"] == 0 else 0 <= row["adversarial_kept"] <= 1
    for name in ("FMN-linf", "DeepFool-linf"):  # minimum-norm attacks fool (almost) every correct image
        assert rows[name]["success_rate"] > 0.9 and rows[name]["median_linf"] < 0.1
    assert rows["PGD-linf"]["median_linf"] <= 0.1 + 1e-6  # PGD stays in its ball
    correlated = [row for row in rows.values() if row["n_pairs"] >= 3]
    assert correlated, "no attack left three essential/adversarial pairs to correlate"
    for row in correlated:
        assert 1 / 21 - 1e-9 <= row["idcor_p"] <= 1 and -1 <= row["cosine_mean"] <= 1
        assert row["id_joint_se"] > 0
        assert row["n_pairs"] < 10 or row["idcor_ci_low"] <= row["idcor_ci_high"]  # few pairs: maybe no interval
        power = results["power"][row["attack"]]
        if row["idcor"] > 0 and power["pairs_for_80"] is not None:
            assert power["power_there"] >= 0.8 and power["pairs_for_80"] <= 4 * row["n_pairs"]
        assert row["idcor"] <= 0 or "80% power" in power["sentence"]
        assert f"{row['attack']}: " in result.stdout
    defence = results["defence"]
    assert 0 <= defence["still_correct"] <= 1 and 0 <= defence["adversarial_undone"] <= 1
    assert defence["adversarial_accuracy_unmasked"] < 0.2  # the FMN adversarials fool the undefended model

    markdown = (out / "results.md").read_text()
    assert markdown.startswith("| attack | IdCor [95% CI], p |") and markdown.count("\n| ") == 3
    assert "Class-map defence" in markdown
    for row in correlated:
        interval = "" if row["idcor_ci_low"] is None else f" [{row['idcor_ci_low']:.2f}, {row['idcor_ci_high']:.2f}]"
        assert f"| {row['attack']} | {row['idcor']:.2f}{interval}, p " in markdown
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"radial_profiles.png", "class_maps.png", "class_means_FMN-linf.png"} <= figures
    assert all((out / "figures" / name).read_bytes()[:4] == b"\x89PNG" for name in figures)
    essential = FrequencyMaps.load(out / "maps" / "essential.pt")
    assert essential.kind == "essential" and len(essential) == rows["FMN-linf"]["correct"]

    # the writer redraws the table and the figures from the saved folder alone
    table = markdown
    (out / "results.md").unlink()
    for figure in (out / "figures").glob("*.png"):
        figure.unlink()
    write_report(out)
    assert (out / "results.md").read_text() == table
    assert {p.name for p in (out / "figures").glob("*.png")} == figures

    (run_dir,) = offline_runs(out)
    run = read_offline_run(run_dir)
    assert run.summary["FMN-linf/success_rate"] == pytest.approx(rows["FMN-linf"]["success_rate"])
    logged = {key.split("/")[1] for key in run.summary if key.startswith("FMN-linf/") and key.count("/") == 1}
    assert logged == set(METRICS)  # W&B, results.json and the README name the same metrics
    assert run.summary["results/_type"] == "table-file"
    assert any(name.startswith("media/table/results") for name in run.files)
    assert any(name.startswith("media/images/figures/radial_profiles") for name in run.files)


def test_missing_checkpoint_is_a_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), "--config", str(CONFIG), "--checkpoint",
         str(tmp_path / "nope.ckpt")], capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 1
    assert re.search(r"nope\.ckpt is neither a zoo model \(cifar10_resnet20, .*digits_small_cnn", result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_study_is_a_one_line_error_naming_the_studies(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "analyze.py"), "curvatur", "--config", str(CONFIG)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert re.search(r"unknown study 'curvatur'; choose one of maps", result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_study_runs_on_a_zoo_model_by_name(tmp_path):
    """A fresh clone's study: the zoo's digits model by name (the config's default), no training."""
    result = subprocess.run(
        [sys.executable, str(REPO / "analyze.py"), "--config", str(CONFIG), "--images", "16",
         "--class_map_images", "0", "--maps.min_steps", "0", "--maps.max_steps", "30", "--permutations", "0",
         "--resamples", "0", "--power_simulations", "0",
         "--output_dir", str(tmp_path / "out"), "--wandb_project", "null", "--progress", "false"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["checkpoint"] == "digits_small_cnn"
    rows = {row["attack"]: row for row in results["rows"]}
    assert rows["PGD-linf"]["images"] == 16 and rows["PGD-linf"]["clean_acc"] >= 14 / 16  # the zoo model's 98%


STUDY_CONFIGS = sorted(path for path in (REPO / "configs").rglob("*.yaml")
                       if re.search(r"#\s+python analyze\.py \w+ --config", path.read_text()))


@pytest.mark.parametrize("config", STUDY_CONFIGS, ids=lambda p: p.stem)
def test_every_study_config_parses_into_its_study(config, request):
    """Each related study's config, by its documented command, builds the study's arguments (datamodule, attacks);
    a CIFAR-10 config on a small real image folder (its datamodule checks the folder)."""
    from analyze import STUDIES, parse

    name = re.search(r"#\s+python analyze\.py (\w+) --config", config.read_text()).group(1)
    root = ["--data.init_args.root", str(request.getfixturevalue("cifar10_few"))] if "CIFAR10" in config.read_text() \
        else []
    study, arguments = parse([name, "--config", str(config), *root])
    assert study is STUDIES[name]
    assert type(arguments["data"]).__name__.endswith("DataModule")
