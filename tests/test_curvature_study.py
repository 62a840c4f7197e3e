"""`python analyze.py curvature` end to end on digits at a tiny size: the results folder, its numbers, and the
offline W&B run hold what the study computed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from freqmaps.curvature_study import CurvatureStudy
from tests.wandb_offline import child_env, read_offline_run

REPO = Path(__file__).resolve().parents[1]
CONFIG = "configs/analysis/digits_curvature.yaml"


def test_curvature_study_on_digits_writes_results_figures_and_a_wandb_run(tmp_path):
    out = tmp_path / "curvature"
    # in a child process, as a user runs it
    subprocess.run([sys.executable, "analyze.py", "curvature", "--config", CONFIG, "--output_dir", str(out),
                    "--images", "12", "--k", "4", "--lanczos_steps", "8", "--h_sweep", "[0.5]", "--dims", "[1, 4]",
                    "--attack_steps", "20", "--pairs", "2", "--path_points", "8", "--directions", "3",
                    "--spectrum_dims", "2", "--progress", "false"],
                   cwd=REPO, env=child_env(), check=True, capture_output=True, timeout=600)
    results = json.loads((out / "results.json").read_text())
    study = CurvatureStudy.from_state(torch.load(out / "study.pt", weights_only=True))
    assert set(results["profiles"]) == {"h=0.1", "h=0.5"} and len(results["profiles"]["h=0.1"]) == 4
    profile = results["profiles"]["h=0.1"]
    assert profile == sorted(profile, reverse=True)  # sorted by value
    assert study.valid.float().mean().item() == results["valid"] > 0.8  # the zoo model: 98% accurate
    assert [row["dim"] for row in results["vulnerability"]] == [1, 4]
    assert [row["attack"] for row in results["detector"]["rows"]] == ["deepfool", "fmn", "pgd"]
    assert 0 <= results["detector"]["rows"][0]["auc"] <= 1 and results["connectivity"]["pairs"] == 2
    figures = ("profile", "vulnerability", "roc", "spectra")
    assert all((out / "figures" / f"{name}.png").stat().st_size > 1000 for name in figures)
    spectra = results["spectra"]
    assert spectra["summary"]["dims"] == 2 and spectra["summary"]["images"] > 0
    for name in ("curved", "random", "perturbation", "adversarial_map"):  # normalised radial profiles (R = 24 at 32 px)
        assert len(spectra[name]) == 24 and abs(sum(spectra[name]) - 1) < 1e-5
    assert 0 < spectra["summary"]["cosine_median"] < 1 and results["converged"] == study.converged
    assert "| deepfool |" in (out / "results.md").read_text()
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert run.summary["detector/deepfool/auc"] == results["detector"]["rows"][0]["auc"]
    assert run.summary["connectivity/connected"] == results["connectivity"]["connected"]
    assert run.summary["spectra/cosine_median"] == spectra["summary"]["cosine_median"]
    assert run.summary["lanczos/converged"] == results["converged"]
    for name in figures:
        assert any(f.startswith(f"media/images/figures/{name}") for f in run.files)
