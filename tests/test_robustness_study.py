"""`python analyze.py robustness` end to end on the zoo's digits CNN (a few images, cheap attacks): the results
folder holds report.pt, results.json and results.md with every attack, and write_results rebuilds them."""
from __future__ import annotations

import json

from analyze import main
from studies.robustness import write_results


def test_robustness_study_writes_its_results(tmp_path):
    out = tmp_path / "robustness"
    main(["robustness", "--checkpoint", "digits_small_cnn", "--data", "datamodules.DigitsDataModule",
          "--data.init_args.num_workers", "0", "--attacks", '{"fgsm": {"class_path": "freqmaps.attacks.FGSM", '
          '"init_args": {"eps": 0.1}}, "square": {"class_path": "freqmaps.attacks.Square", "init_args": '
          '{"eps": 0.1, "queries": 20}}}', "--eps_sweep", "[0.05, 0.1]", "--images", "16", "--batch_size", "16",
          "--output_dir", str(out), "--wandb_project", "null", "--progress", "false", "--device", "cpu"])
    results = json.loads((out / "results.json").read_text())
    assert set(results["accuracy"]) == {"fgsm", "square"} and results["gradient_free"]["square"]
    assert 0 <= results["worst_case_accuracy"] <= min(results["accuracy"].values()) <= results["clean_accuracy"]
    assert list(results["eps_sweep"]) == ["0.05", "0.1"]
    assert "| square | gradient-free" in (out / "results.md").read_text()
    (out / "results.md").unlink()
    write_results(out)
    assert (out / "results.md").is_file()
