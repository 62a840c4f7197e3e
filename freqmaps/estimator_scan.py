"""IdCor of a finished study under several intrinsic-dimension estimators and scales.

    python -m freqmaps.estimator_scan <analyze.py output folder> [--resamples 200] [--pool_kernel K]

reads the study's `maps/essential.pt` and `maps/adversarial_<attack>.pt` (safe loading), pairs the kept maps by
image as the study did (`freqmaps.correlation.correlate_maps`), and for every attack computes IdCor, its
permutation p and (with resamples) its 95% bootstrap interval under TwoNN (the paper's), the Levina-Bickel MLE
at k = 5, 10, 20 and GRIDE at n1 = 1, 2, 4, 8: a result that holds under one estimator and scale only is an
artefact of that choice. Prints a markdown table and writes `estimators.json` into the folder.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from freqmaps.correlation import correlate_maps, idcor_score
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.files import write_atomically
from freqmaps.intrinsic_dimension import Estimator, Gride, LevinaBickel, TwoNN
from freqmaps.maps import FrequencyMaps

ESTIMATORS: tuple[tuple[str, Estimator], ...] = (
    ("TwoNN", TwoNN()), *((f"MLE k={k}", LevinaBickel(k)) for k in (5, 10, 20)),
    *((f"GRIDE n1={n1}", Gride(n1)) for n1 in (1, 2, 4, 8)),
)


def scan(folder: str | Path, permutations: int = 100, resamples: int = 200, seed: int = 0,
         pool_kernel: int | None = None) -> list[dict]:
    """One row per (attack, estimator): attack, estimator, n_pairs, idcor, p, ci_low, ci_high, id_a, id_e,
    id_joint, and null_idcor: the IdCor the median shuffled joint dimension gives (what the estimator reports for
    unrelated pairs of these sets: at small n every estimator undershoots a large joint dimension, so it is not
    0). An estimator that cannot run on so few pairs gives a row with `error`."""
    maps = Path(folder) / "maps"
    essential_path = maps / "essential.pt"
    if not essential_path.is_file():
        raise UserInputError(f"no {essential_path}: give the output folder of analyze.py")
    essential = FrequencyMaps.load(essential_path).kept_only()
    rows = []
    for path in sorted(maps.glob("adversarial_*.pt")):
        adversarial = FrequencyMaps.load(path).kept_only()
        for name, estimator in ESTIMATORS:
            row = {"attack": path.stem.removeprefix("adversarial_"), "estimator": name}
            try:
                result = correlate_maps(essential.maps, adversarial.maps, essential.index, adversarial.index,
                                        permutations, seed, pool_kernel, resamples, estimator)
            except UserInputError as error:
                rows.append(row | {"error": str(error)})
                continue
            interval = result.idcor_interval
            rows.append(row | {
                "n_pairs": result.n_pairs, "idcor": result.idcor.idcor, "p": result.idcor.p_value,
                "ci_low": interval.low if interval else math.nan, "ci_high": interval.high if interval else math.nan,
                "id_a": result.idcor.id_a, "id_e": result.idcor.id_e, "id_joint": result.idcor.id_joint,
                "null_idcor": idcor_score(result.idcor.id_a, result.idcor.id_e, float(result.idcor.null.median()))
                if permutations else math.nan})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| attack | estimator | pairs | id A / E / joint | IdCor [95% CI], p | IdCor of shuffled pairs |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['attack']} | {row['estimator']} | | | {row['error']} | |")
            continue
        lines.append(f"| {row['attack']} | {row['estimator']} | {row['n_pairs']} | {row['id_a']:.1f} / "
                     f"{row['id_e']:.1f} / {row['id_joint']:.1f} | {row['idcor']:.2f} [{row['ci_low']:.2f}, "
                     f"{row['ci_high']:.2f}], p {row['p']:.2g} | {row['null_idcor']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """The command line; a UserInputError exits with a one-line `error: ...` (`exit_on_user_error`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="an analyze.py output folder (it holds maps/)")
    parser.add_argument("--permutations", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool_kernel", type=int, default=None)
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    rows = scan(args.folder, args.permutations, args.resamples, args.seed, args.pool_kernel)
    print(markdown(rows))
    write_atomically(Path(args.folder) / "estimators.json",
                     lambda path: path.write_text(json.dumps(rows, indent=1, allow_nan=True)))


if __name__ == "__main__":
    main()
