"""What installing freqmaps puts on a user's path: only the `freqmaps` core package. The Lightning layers
(`lightning_modules/`, `datamodules/`, `callbacks/`) and the study entries (`studies/`) stay in the repository and
are imported from its root, which `python train.py`, `python analyze.py`, `python -m benchmarks.x` and pytest put
first on sys.path. So a user's own package named `callbacks` is neither shadowed by ours outside the repository nor
picked up by our scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("callbacks", "datamodules", "lightning_modules", "studies")

# Importing one of the user's packages leaves a file IMPORTED beside its __init__.py.
USER_INIT = """import pathlib
OWNER = "user"
pathlib.Path(__file__).with_name("IMPORTED").touch()
"""


@pytest.fixture
def user_packages(tmp_path) -> Path:
    """A folder holding a user's own packages named like our layers (callbacks, datamodules, ...)."""
    folder = tmp_path / "user"
    for name in LAYERS:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(USER_INIT)
    return folder


def run(command: list[str], cwd: Path, pythonpath: list[Path], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=":".join(map(str, pythonpath)), WANDB_MODE="offline", WANDB_SILENT="true")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def built_wheel(tmp_path: Path) -> Path:
    """The wheel `pip install .` would install, built from a copy of the repository's packages and pyproject."""
    pytest.importorskip("setuptools.build_meta", reason="building the wheel needs setuptools (the build backend)")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for folder in REPO.iterdir():  # every top-level package, so that one left out is seen to be left out
        if (folder / "__init__.py").is_file():
            shutil.copytree(folder, source / folder.name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_wheel({str(out)!r})"],
        cwd=source, pythonpath=[])
    (wheel,) = out.glob("*.whl")
    return wheel


def test_wheel_installs_only_the_core_and_leaves_users_packages_alone(tmp_path, user_packages):
    wheel = built_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
        assert top_level == {"freqmaps"}
        assert {"freqmaps/attacks/__init__.py", "freqmaps/models/__init__.py"} <= set(names)  # subpackages too
        site = tmp_path / "site"
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -S: no site-packages, so only the user's folder and the installed wheel are importable, whatever this
    # environment has installed. Nothing is imported but the user's packages (no torch needed).
    probe = ("import importlib.util, callbacks, datamodules, lightning_modules, studies; "
             "print(callbacks.OWNER, datamodules.OWNER, lightning_modules.OWNER, studies.OWNER); "
             "print(importlib.util.find_spec('freqmaps').origin)")
    lines = run([sys.executable, "-S", "-c", probe], cwd=elsewhere,
                pythonpath=[user_packages, site]).stdout.splitlines()
    assert lines[0] == "user user user user"
    assert Path(lines[1]) == site / "freqmaps" / "__init__.py"


@pytest.mark.slow
def test_repository_entry_points_resolve_their_own_layers(tmp_path, user_packages):
    # python -m benchmarks.x / python -c from the repository root: the working directory comes first
    probe = "import importlib.util; print(*(importlib.util.find_spec(n).origin for n in %r), sep='\\n')" % (LAYERS,)
    origins = run([sys.executable, "-c", probe], cwd=REPO, pythonpath=[user_packages]).stdout.split()
    assert [Path(o) for o in origins] == [REPO / name / "__init__.py" for name in LAYERS]

    # python train.py: the script's folder comes first, wherever it is run from (here from tmp_path, so the
    # run's outputs land there); LightningCLI resolves the config's class paths (callbacks.FrequencyMapsCallback,
    # lightning_modules.StandardClassifier, datamodules.DigitsDataModule) to this repository's classes
    run([sys.executable, str(REPO / "train.py"), "fit", "--config", str(REPO / "configs" / "default.yaml"),
         "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu"], cwd=tmp_path, pythonpath=[user_packages])
    assert not list(user_packages.rglob("IMPORTED")), "a script imported the user's package instead of ours"
