"""Study folders never mix two runs: results.json is written last and atomically, a folder holding a finished
study is refused unless overwrite, and a rerun that dies half way leaves no results.json behind (so no old,
complete-looking results beside new maps) and no partial files."""
from __future__ import annotations

import json

import pytest

from analyze import analyze
from datamodules import DigitsDataModule
from freqmaps.attacks import PGD
from freqmaps.errors import UserInputError
from freqmaps.files import write_atomically
from freqmaps.maps import FrequencyMaps, MapSettings


def study(out, **changes):
    args = dict(checkpoint="digits_small_cnn", data=DigitsDataModule(), attacks=[PGD(eps=0.1, steps=3)],
                output_dir=out, images=24, maps=MapSettings(lam=0.1, solver="fast", fast_min_steps=10,
                                                            fast_max_steps=20),
                permutations=5, resamples=0, power_simulations=0, wandb_project=None, progress=False)
    return analyze(**{**args, **changes})


def test_a_finished_study_is_not_overwritten_and_a_dying_rerun_leaves_no_results(tmp_path, monkeypatch):
    out = tmp_path / "study"
    study(out)
    first = json.loads((out / "results.json").read_text())
    with pytest.raises(UserInputError, match="holds the results of another study.*--overwrite true"):
        study(out, seed=1)
    assert json.loads((out / "results.json").read_text()) == first  # untouched

    saves = []

    def dies_on_the_second_map(self, path):
        saves.append(path)
        if len(saves) == 2:
            raise OSError(28, "No space left on device")
        return original(self, path)

    original = FrequencyMaps.save
    monkeypatch.setattr(FrequencyMaps, "save", dies_on_the_second_map)
    with pytest.raises(OSError, match="No space left"):
        study(out, seed=1, overwrite=True)
    assert not (out / "results.json").exists()  # the old results went first: nothing claims to describe the folder
    assert not list(out.rglob("*.partial"))
    monkeypatch.setattr(FrequencyMaps, "save", original)
    study(out, seed=1, overwrite=True)
    assert json.loads((out / "results.json").read_text())["rows"][0]["images"] == 24


def test_a_failing_writer_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half_then_fail(path):
        path.write_text("new, cut")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old" and not (tmp_path / "f.txt.partial").exists()
    write_atomically(target, lambda path: path.write_text("new"))
    assert target.read_text() == "new"
