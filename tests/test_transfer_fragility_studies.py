"""The transfer and fragility studies end to end through `analyze.py <study> --config`, on the zoo's digits CNN:
results.json / results.md / figures, a result file that loads back, and an offline W&B run holding the scalars."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from analyze import main
from freqmaps.fragility import FragilityResult, spearman
from freqmaps.transfer import TransferResult
from tests.wandb_offline import read_offline_run

DIGITS = {"class_path": "datamodules.DigitsDataModule",
          "init_args": {"image_size": 32, "channels": 1, "val_size": 180, "test_size": 360, "batch_size": 64,
                        "num_workers": 0, "seed": 0}}


def run(tmp_path, study: str, config: dict):
    path = tmp_path / f"{study}.yaml"
    path.write_text(yaml.safe_dump({"data": DIGITS, "output_dir": str(tmp_path / study), "progress": False,
                                    "device": "cpu", **config}))
    main([study, "--config", str(path)])
    (run_dir,) = (tmp_path / study / "wandb").glob("offline-run-*")
    return tmp_path / study, read_offline_run(run_dir)


def test_transfer_study_writes_its_table_figures_and_wandb_run(tmp_path):
    pgd = {"class_path": "freqmaps.attacks.PGD", "init_args": {"eps": 1.0, "norm": "l2", "steps": 3}}
    targeted = {"class_path": "freqmaps.attacks.TargetedPGD", "init_args": {"eps": 2.0, "norm": "l2", "steps": 3}}
    out, wandb_run = run(tmp_path, "transfer", {
        "sources": {"cnn": "digits_small_cnn"}, "targets": {"same": "digits_small_cnn"}, "source_eps": {"cnn": 0.0},
        "attack": pgd, "targeted_attack": targeted, "images": 24, "map_images": 4,
        "map_settings": {"solver": "fast", "fast_max_steps": 100}})
    payload = json.loads((out / "results.json").read_text())
    for kind in ("untargeted", "targeted"):
        result = TransferResult.load(out / f"transfer_{kind}.pt")
        assert result.targeted == (kind == "targeted")
        assert result.success[0, 0] == result.white_box[0]  # the source is its own target
        assert payload[kind]["success"] == result.success.tolist()
        assert wandb_run.summary[f"{kind}/cnn/same"] == result.success[0, 0].item()
        assert result.map_cosine.shape == (1, 1, 4)  # the source's adversarial and the target's essential maps
        expected = [None if math.isnan(v) else pytest.approx(v) for v in result.mean_map_cosine[0].tolist()]
        assert payload[kind]["map_cosine"][0] == expected  # strict JSON: null where no image has a cosine
        pairs = int(result.map_pairs[0, 0])  # the images with a cosine, reported beside it
        assert payload[kind]["map_pairs"] == [[pairs]] and wandb_run.summary[f"{kind}/map_pairs/cnn/same"] == pairs
        assert payload[kind]["map_index"] == result.map_index.tolist() and len(set(result.map_index.tolist())) == 4
        cell = f"{result.mean_map_cosine[0, 0]:.3f} ({pairs})" if pairs else "n/a (0)"
        assert f"| cnn | {cell} |" in (out / "results.md").read_text()
    assert "| cnn (" in (out / "results.md").read_text()
    assert (out / "figures" / "success_vs_eps.png").stat().st_size > 0 and (out / "figures" / "spectra.png").is_file()


def test_fragility_study_ranks_the_filters_and_evaluates_the_defence(tmp_path):
    out, wandb_run = run(tmp_path, "fragility", {"checkpoint": "digits_small_cnn", "images": 16,
                                                "eps": [0.02, 0.05], "pgd_steps": 2, "defence_eps": 0.05,
                                                "map_images": 6, "map_settings": {"solver": "fast",
                                                                                  "fast_max_steps": 100}})
    result = FragilityResult.load(out / "fragility.pt")
    payload = json.loads((out / "results.json").read_text())
    assert result.fragility.shape == (32,) and payload["ranking"] == result.ranking.tolist()
    assert torch.all(result.fragility[result.ranking][:-1] >= result.fragility[result.ranking][1:])
    assert set(payload["defence"]["accuracy"]) == {"clean", "FGSM", "PGD-2"}
    assert "defence/PGD-2/adaptive" in wandb_run.summary
    profile, correlation = torch.tensor(payload["adversarial_profile"]), torch.tensor(payload["profile_correlation"])
    assert profile.shape == (24,) and not profile.isnan().any()  # radii 0..23 of the FGSM maps at 32 px
    radial = torch.tensor(payload["radial_response"])
    k = int(result.ranking[0])
    assert correlation[k].item() == pytest.approx(torch.corrcoef(torch.stack([radial[k], profile]))[0, 1].item(),
                                                  abs=1e-5)
    assert payload["spearman_profile"] == pytest.approx(spearman(result.fragility, correlation))
    assert (out / "figures" / "fragility.png").is_file() and "## Rescaling defence" in (out / "results.md").read_text()
