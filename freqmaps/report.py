"""The study's results folder: saved from a `freqmaps.study.Study`, and its table and figures drawn from the folder
alone, so they can be redrawn from a saved result (`python -m freqmaps.report DIR`).

    results.json   "rows": one per attack, keys `freqmaps.study.ROW_FIELDS` (the metric vocabulary
                   `freqmaps.analysis.METRICS`); "per_class": attack -> rows (`freqmaps.analysis.PER_CLASS`);
                   "correlation": attack -> IdCor's permutation "null" distribution and, without a correlation,
                   the reason ("no_correlation"); "defence": the class-map rates; "num_classes", "class_names",
                   and the run details given as `extra`. Valid JSON: nan is written as null.
    maps/          essential.pt and adversarial_<attack>.pt (FrequencyMaps.load), class_maps.pt (ClassMaps.load)
    results.md     the table, one row per attack, then the class-map defence
    figures/       class_means_<attack>.png (per-class mean essential vs adversarial maps), idcor_null_<attack>.png
                   (the null distribution with the observed joint id), radial_profiles.png, class_maps.png
"""
from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from freqmaps.class_maps import ClassMaps
from freqmaps.correlation import IdCorResult
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.figures import class_maps_figure, class_means_figure, null_distribution_figure, radial_profile_figure
from freqmaps.files import check_writable, safe, write_atomically
from freqmaps.maps import FrequencyMaps
from freqmaps.study import ROW_FIELDS, Study

DEFENCE_SENTENCE = (
    "\nClass-map defence (maps trained with {attack}): still correct {still_correct:.4f}, adversarial undone "
    "{adversarial_undone:.4f} (label-using, the paper's); label-free: clean accuracy {clean_accuracy:.4f} (unmasked "
    "{clean_accuracy_unmasked:.4f}), adversarial accuracy {adversarial_accuracy:.4f} (unmasked "
    "{adversarial_accuracy_unmasked:.4f}); adaptive {adaptive_attack}: robust accuracy "
    "{adaptive_robust_accuracy:.4f} defended vs {undefended_robust_accuracy:.4f} undefended.\n"
)


def prepare_output_dir(directory: str | Path, overwrite: bool = False) -> Path:
    """Create the results folder and check, before any compute, that files can be written in it and that it
    does not hold a finished study (its results.json) unless `overwrite`; UserInputError otherwise."""
    directory = check_writable(directory, "output_dir")
    if (directory / "results.json").exists() and not overwrite:
        raise UserInputError(f"{directory} holds the results of another study (results.json); choose another "
                             "--output_dir or pass --overwrite true")
    return directory


def write_study(study: Study, directory: str | Path, class_names: Sequence[str] | None = None,
                extra: dict | None = None, overwrite: bool = False) -> dict[str, Path]:
    """`save_study` then `write_report`: the whole results folder. Returns name -> path of every file written."""
    return save_study(study, directory, class_names, extra, overwrite) | write_report(directory)


def save_study(study: Study, directory: str | Path, class_names: Sequence[str] | None = None,
               extra: dict | None = None, overwrite: bool = False) -> dict[str, Path]:
    """Write maps/*.pt, then results.json (see the module docstring), each file atomically: results.json is
    written last, so a folder holding one holds everything it describes. A folder that already holds a study's
    results.json is refused unless `overwrite`, and then that results.json is removed first (a rerun killed
    half way never leaves new maps beside old results). Returns name -> path."""
    directory = prepare_output_dir(directory, overwrite)
    (directory / "results.json").unlink(missing_ok=True)
    (directory / "maps").mkdir(exist_ok=True)
    paths = {"essential": directory / "maps" / "essential.pt"}
    write_atomically(paths["essential"], study.essential.save)
    for name, analysis in study.analyses.items():
        paths[f"adversarial_{safe(name)}"] = directory / "maps" / f"adversarial_{safe(name)}.pt"
        write_atomically(paths[f"adversarial_{safe(name)}"], analysis.images.adversarial.save)
    results = {
        "rows": study.rows,
        "per_class": {name: analysis.per_class for name, analysis in study.analyses.items()},
        "correlation": {name: {"null": a.correlation.idcor.null if a.correlation else None,
                               "no_correlation": a.no_correlation} for name, a in study.analyses.items()},
        "num_classes": next(iter(study.analyses.values())).images.num_classes,
        "class_names": None if class_names is None else list(class_names),
        **(extra or {}),
    }
    if study.defence is not None:
        d = study.defence
        paths["class_maps"] = directory / "maps" / "class_maps.pt"
        write_atomically(paths["class_maps"], d.maps.save)
        results["defence"] = {"attack": d.attack, **asdict(d.rates), "adaptive_attack": d.adaptive_attack,
                              "adaptive_robust_accuracy": d.adaptive_robust_accuracy,
                              "undefended_robust_accuracy": d.undefended_robust_accuracy,
                              "class_map_steps": d.maps.steps, "seconds": d.seconds}
    text = json.dumps(plain(results), indent=2, allow_nan=False) + "\n"
    paths["json"] = write_atomically(directory / "results.json", lambda path: path.write_text(text))
    return paths


def write_report(directory: str | Path) -> dict[str, Path]:
    """Draw results.md and figures/*.png from a folder `save_study` wrote. Returns name -> path."""
    directory = Path(directory)
    if not (directory / "results.json").is_file():
        raise UserInputError(f"no results.json in {directory}: give a folder written by analyze.py")
    results = json.loads((directory / "results.json").read_text())
    rows = [{key: _number(value) for key, value in row.items()} for row in results["rows"]]
    num_classes, class_names = results["num_classes"], results["class_names"]
    (directory / "figures").mkdir(exist_ok=True)
    figures = {}
    essential = FrequencyMaps.load(directory / "maps" / "essential.pt")
    adversarial = {row["attack"]: FrequencyMaps.load(directory / "maps" / f"adversarial_{safe(row['attack'])}.pt")
                   for row in rows}
    for row in rows:
        name = row["attack"]
        figures[f"class_means_{safe(name)}"] = class_means_figure(essential, adversarial[name], num_classes,
                                                                  class_names)
        figures[f"class_means_{safe(name)}"].suptitle(f"mean maps per class: essential vs {name}", fontsize=9)
        null = results["correlation"][name]["null"]
        if null is not None:
            result = IdCorResult(row["idcor"], row["idcor_p"], row["id_adversarial"], row["id_essential"],
                                 row["id_joint"], torch.tensor(null))
            figures[f"idcor_null_{safe(name)}"] = null_distribution_figure(name, result)
    figures["radial_profiles"] = radial_profile_figure(essential, adversarial)
    table = markdown_table(rows)
    if "defence" in results:
        figures["class_maps"] = class_maps_figure(ClassMaps.load(directory / "maps" / "class_maps.pt").maps,
                                                  class_names)
        table += DEFENCE_SENTENCE.format(**{key: _number(value) for key, value in results["defence"].items()})
    paths = {"markdown": write_atomically(directory / "results.md", lambda path: path.write_text(table))}
    for key, figure in figures.items():
        paths[key] = write_atomically(directory / "figures" / f"{key}.png",
                                      lambda path, figure=figure: figure.savefig(path, dpi=110, format="png"))
    return paths


def markdown_table(rows: Sequence[dict]) -> str:
    """The rows (keys ROW_FIELDS) as a markdown table, numbers to 4 significant digits, after the attack a column
    that reads IdCor as `0.28 [0.05, 0.49], p 0.03` (value, bootstrap interval, permutation p)."""
    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    columns = (ROW_FIELDS[0], IDCOR_CELL, *ROW_FIELDS[1:])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join([cell(row[ROW_FIELDS[0]]), idcor_cell(row)] + [cell(row[key]) for key in
                                                                             ROW_FIELDS[1:]]) + " |" for row in rows]
    return "\n".join(lines) + "\n"


IDCOR_CELL = "IdCor [95% CI], p"


def idcor_cell(row: dict) -> str:
    """`0.28 [0.05, 0.49], p 0.03`; without an interval `0.28, p 0.03`; without a correlation `none`."""
    def finite(key: str) -> float | None:
        value = row.get(key)
        return float(value) if value is not None and math.isfinite(float(value)) else None

    value, low, high, p = (finite(key) for key in ("idcor", "idcor_ci_low", "idcor_ci_high", "idcor_p"))
    if value is None:
        return "none"
    interval = f" [{low:.2f}, {high:.2f}]" if low is not None and high is not None else ""
    return f"{value:.2f}{interval}" + (f", p {p:.3g}" if p is not None else "")


def plain(value):
    """`value` with tensors as lists and nan / inf as None, for strict JSON."""
    if isinstance(value, torch.Tensor):
        return plain(value.tolist())
    if isinstance(value, dict):
        return {key: plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value):
    """A value read back from results.json, with null as nan."""
    return math.nan if value is None else value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Redraw results.md and figures/ of a saved study folder.")
    parser.add_argument("directory", type=Path, help="a folder written by analyze.py (results.json, maps/)")
    for path in write_report(parser.parse_args(argv).directory).values():
        print(path)


if __name__ == "__main__":
    exit_on_user_error(main)
