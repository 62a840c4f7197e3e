"""The paper's correlation study on a trained checkpoint: attacks, essential and adversarial maps, IdCor /
SVCCA / CKA / cosine, class-level maps as a defence; writes a results folder and an (offline) W&B run.

    python analyze.py --config configs/reproduce/cifar10_analyze.yaml      (the zoo's cifar10_resnet20)
    python analyze.py --config configs/reproduce/cifar10_analyze.yaml --checkpoint path/to/last.ckpt
    python analyze.py --config configs/reproduce/digits_analyze.yaml --checkpoint ... --images 200
    python analyze.py --help        (every knob; configs can interpolate with ${...})
    python analyze.py STUDY --config ...   (a related study: see STUDIES, e.g. `python analyze.py curvature --help`)

The results folder holds results.json, results.md (one row per attack, then the class-map defence),
figures/*.png and maps/*.pt (see freqmaps.report; `python -m freqmaps.report DIR` redraws table and figures).
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import ArgumentParser, set_parsing_settings

from datamodules.base import ImageDataModule
from freqmaps.analysis import PER_CLASS
from freqmaps.attacks import Attack
from freqmaps.chunks import ChunkStore, digest
from freqmaps.class_maps import CLASS_MAP_SETTINGS
from freqmaps.errors import UserInputError, exit_on_user_error
from freqmaps.maps import MapSettings, speed_free
from freqmaps.power import pairs_for_power
from freqmaps.report import prepare_output_dir, write_study
from freqmaps.sampling import seeded_indices, take
from freqmaps.study import ROW_FIELDS, Study, run_study
from studies.common import load_probe, log_to_wandb, pick_device
from studies.curvature import curvature
from studies.fragility import fragility_study
from studies.kurtotic_linear import kurtotic_linear_study
from studies.robustness import robustness
from studies.transfer import transfer_study


def attack_names(attacks: list[Attack]) -> list[str]:
    """Row names: the attack's class and norm (e.g. FMN-linf), numbered when two would coincide."""
    names = [type(a).__name__ + (f"-{a.norm}" if hasattr(a, "norm") else "") for a in attacks]
    return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def analyze(
    checkpoint: str,
    data: ImageDataModule,
    attacks: list[Attack],
    output_dir: Path = Path("outputs/analysis"),
    overwrite: bool = False,
    images: int = 1000,
    split: Literal["test", "val"] = "test",
    maps: MapSettings = MapSettings(),
    permutations: int = 100,
    resamples: int = 1000,
    power_simulations: int = 50,
    seed: int = 0,
    pool_kernel: int | None = None,
    active_threshold: float = 0.5,
    attack_batch_size: int = 256,
    class_map_images: int = 0,
    class_map_attack: str | None = None,
    class_maps: MapSettings = CLASS_MAP_SETTINGS,
    adaptive_attack: Attack | None = None,
    resume: bool = True,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    wandb_project: str | None = "freqmaps",
    wandb_name: str | None = None,
    wandb_offline: bool = True,
    progress: bool = True,
) -> dict:
    """Run the study and write the results folder; returns {"rows": the table rows, "paths": name -> path}.

    Args:
        checkpoint: a zoo model name (`python -m freqmaps.zoo list`) or a .ckpt written by `python train.py fit`.
        data: the datamodule the model was trained on; its `split` images are studied.
        attacks: one table row each (e.g. FMN, PGD eps 8/255, DeepFool; all L-inf in the paper).
        output_dir: the results folder (created; checked writable before any compute).
        overwrite: replace a finished study's results in output_dir (otherwise such a folder is refused).
        images: clean images drawn from `split` with `seed` (the draw of the callbacks' probe).
        maps: the essential/adversarial map solver (the paper's: lam 0.5 at 32 px, lr 0.01, 500/5000 steps), the
            same knobs as FrequencyMapsCallback's `maps`; `solver: fast` for the fast rule (README "Two solvers").
        permutations: IdCor's permutation test.
        resamples: IdCor's bootstrap interval over pairs (95%, percentile; 0: none).
        power_simulations: simulations per tried number of pairs for the pairs IdCor's test needs to detect the
            observed IdCor with 80% power (`freqmaps.power.pairs_for_power`; 0: not computed).
        seed: image draw, attack random starts (chunk k: seed + k), IdCor permutations.
        pool_kernel: max-pool before correlating (None: the paper's). active_threshold: a map entry above it
            counts as a frequency kept (for the sparsity metrics).
        attack_batch_size: images per attack call.
        class_map_images: validation images (held-out training images) to train class maps on; 0 skips the
            defence study.
        class_map_attack: the row name of the attack whose adversarials train the class maps (default: first).
        class_maps: the class-map solver (the paper's: lam 1e-3, tol 1e-3).
        adaptive_attack: attack run against the label-free defended model, which sees the maps.
        resume: save each finished chunk (attack_batch_size images of one attack: adversarials and maps; the
            defence's pieces, in chunks/defence; the class-map solver every 25 rounds) under output_dir/chunks,
            and on a rerun with the same model, images, solver, attacks, seed and device read them back instead
            of recomputing: a killed run loses at most one chunk. Settings that only conclude (permutations,
            resamples, power_simulations, pool_kernel, active_threshold) and working batch sizes may change
            between runs; others need --overwrite true, which renews the chunks whose settings changed (the
            defence's own settings: only chunks/defence).
        device: where the model and the solvers run.
        wandb_project: W&B project for a run holding the table, scalars and figures (None: no W&B run).
        wandb_offline: write the run offline (`wandb sync` uploads it later).
        progress: progress bars.
    """
    started = time.perf_counter()
    for name, value, least in (("images", images, 1), ("permutations", permutations, 0), ("resamples", resamples, 0),
                               ("power_simulations", power_simulations, 0),
                               ("attack_batch_size", attack_batch_size, 1), ("class_map_images", class_map_images, 0)):
        if value < least:
            raise UserInputError(f"{name} must be >= {least}, got {value}")
    prepare_output_dir(output_dir, overwrite)
    device = pick_device(device)
    model, x, y, index = load_probe(checkpoint, data, images, split, seed, device)
    class_data = None
    if class_map_images:
        class_data = tuple(t.to(device) for t in take(data.val_set, seeded_indices(len(data.val_set),
                                                                                   class_map_images, seed + 1)))
    names = attack_names(attacks)
    store = None
    if resume:
        fingerprint = {"model": digest(model.state_dict()), "images": index.tolist(), "split": split,
                       "device": device.type, "maps": speed_free(maps), "attacks": dict(zip(names, map(repr, attacks))),
                       "attack_batch_size": attack_batch_size, "seed": seed}  # the defence adds its own (run_study)
        store = ChunkStore(Path(output_dir) / "chunks", fingerprint, restart=overwrite)
    study = run_study(
        model, x.to(device), y.to(device), list(zip(names, attacks)), maps, index=index, permutations=permutations,
        seed=seed, pool_kernel=pool_kernel, active_threshold=active_threshold, attack_batch_size=attack_batch_size,
        class_map_data=class_data, class_map_attack=class_map_attack, class_map_settings=class_maps,
        adaptive_attack=None if adaptive_attack is None else (attack_names([adaptive_attack])[0], adaptive_attack),
        progress=progress, resamples=resamples, store=store,
    )
    if store is not None and store.reused:
        print(f"resumed: {len(store.reused)} finished chunk(s) read from {store.folder}")
    class_names = getattr(data, "class_names", None)
    extra = {"checkpoint": str(checkpoint), "device": str(device), "images": images, "split": split,
             "total_seconds": time.perf_counter() - started,
             "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}
    if power_simulations:
        extra["power"] = {row["attack"]: power_row(row, power_simulations, seed) for row in study.rows}
    paths = write_study(study, output_dir, class_names, extra, overwrite)
    print(paths["markdown"].read_text())
    for attack, power in extra.get("power", {}).items():
        print(f"{attack}: {power['sentence']}")
    log_to_wandb(wandb_project, wandb_name, wandb_offline, output_dir, "analysis", extra, *wandb_log(study, paths))
    print(f"results in {output_dir} ({extra['total_seconds']:.0f} s)")
    return {"rows": study.rows, "paths": paths}


def power_row(row: dict, simulations: int, seed: int) -> dict:
    """The pairs IdCor's permutation test needs to detect the row's IdCor with 80% power, by simulation at the
    row's rounded dimensions (`freqmaps.power.pairs_for_power`, 50 permutations, searched from a quarter to four
    times the row's pairs), with a sentence saying so."""
    n, effect = int(row["n_pairs"]), float(row["idcor"])
    if not math.isfinite(effect) or effect <= 0:
        return {"pairs_for_80": None, "sentence": f"IdCor {effect:.3f}: no positive effect to size a test for"}
    id_a, id_e = max(1, round(float(row["id_adversarial"]))), max(1, round(float(row["id_essential"])))
    most = 4 * n  # the search's cost grows as n^2: it stops at four times the pairs the study has
    try:
        found = pairs_for_power(id_a, id_e, effect, 0.8, simulations=simulations, permutations=50, seed=seed,
                                start=max(10, n // 4), most=most)
    except UserInputError:
        return {"pairs_for_80": None, "sentence": (
            f"IdCor {effect:.3f} with {n} pairs; at dimensions {id_a} / {id_e} the permutation test needs more than "
            f"{most} pairs for 80% power ({simulations} simulations)")}
    return {"pairs_for_80": found.n, "power_there": found.power, "effect_simulated": found.effect,
            "id_a": id_a, "id_e": id_e, "sentence": (
                f"IdCor {effect:.3f} with {n} pairs; at dimensions {id_a} / {id_e} (shared {found.shared}: IdCor "
                f"{found.effect:.3f}) the permutation test reaches 80% power at about {found.n} pairs "
                f"(simulated power {found.power:.2f}, {simulations} simulations)")}


def wandb_log(study: Study, paths: dict[str, Path]) -> tuple[dict, dict, dict[str, Path]]:
    """What the maps study logs to W&B: each row's scalars under <attack>/<metric> and the defence rates under
    defence/; the tables `results` and <attack>/per_class; the figures (under figures/)."""
    rows = study.rows
    scalars = {f"{row['attack']}/{k}": row[k] for row in rows for k in ROW_FIELDS if k != "attack"}
    tables = {"results": (list(ROW_FIELDS), [[row[k] for k in ROW_FIELDS] for row in rows])}
    tables |= {f"{attack}/per_class": (list(PER_CLASS), [[r[k] for k in PER_CLASS] for r in analysis.per_class])
               for attack, analysis in study.analyses.items()}
    if study.defence is not None:
        d = study.defence
        scalars |= {f"defence/{k}": v for k, v in vars(d.rates).items()}
        scalars |= {"defence/adaptive_robust_accuracy": d.adaptive_robust_accuracy,
                    "defence/undefended_robust_accuracy": d.undefended_robust_accuracy}
    return scalars, tables, {key: path for key, path in paths.items() if path.suffix == ".png"}


STUDIES: dict[str, Callable[..., dict]] = {"maps": analyze, "curvature": curvature, "transfer": transfer_study,
                                            "fragility": fragility_study, "robustness": robustness,
                                            "kurtotic_linear": kurtotic_linear_study}


def parse(argv: list[str]) -> tuple[Callable[..., dict], dict]:
    """`[STUDY] --config ...` -> the study function (STUDIES; default `maps`) and its instantiated arguments."""
    argv = list(argv)
    name = argv.pop(0) if argv and argv[0] in STUDIES else "maps"
    if argv and not argv[0].startswith("-"):
        raise UserInputError(f"unknown study {argv[0]!r}; choose one of {', '.join(STUDIES)}")
    study = STUDIES[name]
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    parser = ArgumentParser(prog=f"analyze.py {name}", description=(study.__doc__ or "").split("\n")[0],
                            parser_mode="omegaconf+")
    parser.add_argument("--config", action="config")
    parser.add_function_arguments(study)
    init = parser.instantiate(parser.parse_args(argv))
    return study, {k: v for k, v in vars(init).items() if k != "config"}


def main(argv: list[str] | None = None) -> None:
    """`analyze.py [STUDY] --config ...`: STUDY one of STUDIES (default `maps`, the paper's study); the rest of the
    command line is that study function's arguments."""
    study, arguments = parse(sys.argv[1:] if argv is None else argv)
    study(**arguments)


if __name__ == "__main__":
    exit_on_user_error(main)
