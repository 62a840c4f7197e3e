"""The composed configs resolve to exactly the values of the flat configs they replaced.

tests/frozen_configs/<name>.yaml is what `python train.py fit --config configs/<name>.yaml --print_config` printed
before the configs were composed, the training modes became objectives and input filters, and the map solver's
knobs moved into FrequencyMapsCallback's `maps:` section (and that callback moved to the fast map rule), and
the trainer gained the AtomicCheckpointIO plugin. `upgraded` renames those keys explicitly; an init
argument a class gained since then must hold its default; every other value must be equal."""
from __future__ import annotations

import copy
import importlib
import inspect

import pytest
import yaml

from tests.train_configs import REPO, config_args, resolve

FROZEN = sorted((REPO / "tests" / "frozen_configs").glob("*.yaml"))
SOLVER_KEYS = ("lam", "lr", "min_steps", "max_steps", "tol", "window")
OBJECTIVES = {"pgd": "PGDTraining", "trades": "TRADESTraining", "fgsm": "FastFGSMTraining"}


def frequency_maps_callback(args: dict) -> dict:
    """Flat lam / lr / min_steps / max_steps / tol / window -> maps.*; the solver's batch was the callback's, and
    its Adam betas and eps were MapSettings' defaults then."""
    solver = {key: args.pop(key) for key in SOLVER_KEYS}
    return {**args, "maps": {**solver, "batch_size": args["batch_size"], "betas": [0.9, 0.999], "eps": 1e-08}}


FAST_RULE = {"solver": "fast", "time_scale": 1.75, "fast_min_steps": 85, "fast_max_steps": 500, "change_window": 5,
             "change_tol": 0.03, "autocast": False}


DIGITS_FAST_RULE = {"time_scale": 4.0, "fast_min_steps": 35}


def fast_rule(args: dict) -> dict:
    """The per-epoch analyses moved to the fast map rule: its knobs join `maps`, whose paper-rule knobs are then the
    paper's 500 / 5000 steps (unused under the fast rule), and warm-started maps may stop after 20 steps. MapSettings
    gained `memory_gib` since (None: the working batch as given). The digits' callbacks (lam 0.1) later moved to
    time scale 4 from step 35 (closer to the paper rule's digit maps, in fewer steps)."""
    digits = DIGITS_FAST_RULE if args["maps"]["lam"] == 0.1 else {}
    return {**args, "maps": {**args["maps"], "min_steps": 500, "max_steps": 5000, **FAST_RULE, **digits,
                             "memory_gib": None}, "warm_min_steps": 20}


def classifier(class_name: str, args: dict) -> dict:
    """StandardClassifier's label_smoothing, AdversarialClassifier's method / train_attack / trades_beta and
    FrequencyMaskedClassifier's filter / radius / band / dropout / maps_file -> objective, input_filter,
    eval_attack of the one StandardClassifier."""
    objective = {"class_path": "freqmaps.objectives.CrossEntropy",
                 "init_args": {"label_smoothing": args.pop("label_smoothing", 0.0)}}
    input_filter, eval_attack = None, None
    if class_name == "AdversarialClassifier":
        method, attack, beta = args.pop("method"), args.pop("train_attack"), args.pop("trades_beta")
        objective = {"class_path": f"freqmaps.objectives.{OBJECTIVES[method]}",
                     "init_args": {"attack": attack, **({"beta": beta} if method == "trades" else {})}}
        eval_attack = args.pop("eval_attack")
    elif class_name == "FrequencyMaskedClassifier":
        kind, radius, band = args.pop("filter"), args.pop("radius"), args.pop("band")
        dropout, maps_file = args.pop("dropout"), args.pop("maps_file")
        input_filter = {
            "lowpass": {"class_path": "freqmaps.filters.LowPass", "init_args": {"radius": radius}},
            "highpass": {"class_path": "freqmaps.filters.HighPass", "init_args": {"radius": radius}},
            "band": {"class_path": "freqmaps.filters.BandPass", "init_args": {"low": band[0], "high": band[1]}},
            "dropout": {"class_path": "freqmaps.filters.FrequencyDropoutFilter", "init_args": {"p": dropout}},
            "class_maps": {"class_path": "freqmaps.filters.ClassMapFilter", "init_args": {"maps_file": maps_file}},
        }[kind]
    return {**args, "objective": objective, "input_filter": input_filter, "eval_attack": eval_attack}


def with_new_defaults(expected, resolved):
    """`expected`, with the init arguments that only `resolved` has (arguments a class gained since the freeze)
    taken over where `resolved` holds the class's default for them; any other difference stays."""
    if isinstance(expected, list) and isinstance(resolved, list) and len(expected) == len(resolved):
        return [with_new_defaults(e, r) for e, r in zip(expected, resolved)]
    if not (isinstance(expected, dict) and isinstance(resolved, dict)):
        return expected
    out = {key: with_new_defaults(value, resolved.get(key)) for key, value in expected.items()}
    args, new_args = out.get("init_args"), resolved.get("init_args")
    if "class_path" in out and out["class_path"] == resolved.get("class_path") and isinstance(args, dict) \
            and isinstance(new_args, dict):
        module, _, name = out["class_path"].rpartition(".")
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        for key in new_args.keys() - args.keys():
            if key in parameters and new_args[key] == parameters[key].default:
                args[key] = new_args[key]
    return out


def upgraded(frozen: dict) -> dict:
    """A frozen resolved config in today's keys and classes."""
    config = copy.deepcopy(frozen)
    assert config["trainer"]["plugins"] is None
    config["trainer"]["plugins"] = [{"class_path": "lightning_modules.atomic_checkpoint.AtomicCheckpointIO"}]
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"] == "callbacks.FrequencyMapsCallback":
            callback["init_args"] = fast_rule(frequency_maps_callback(callback["init_args"]))
    model = config["model"]
    model["init_args"] = classifier(model["class_path"].rpartition(".")[2], model["init_args"])
    model["class_path"] = "lightning_modules.StandardClassifier"
    return config


@pytest.mark.parametrize("frozen", FROZEN, ids=lambda p: p.stem)
def test_composed_config_resolves_to_the_frozen_values(frozen):
    resolved = resolve(config_args(REPO / "configs" / frozen.name))
    expected = with_new_defaults(upgraded(yaml.safe_load(frozen.read_text())), resolved)
    for section in ("trainer", "model", "data"):
        assert resolved[section] == expected[section], section
    assert resolved == expected


def test_upgrade_maps_the_renamed_keys():
    old = yaml.safe_load((REPO / "tests" / "frozen_configs" / "digits_trades.yaml").read_text())
    new = upgraded(old)["model"]["init_args"]
    assert new["objective"]["class_path"] == "freqmaps.objectives.TRADESTraining"
    assert new["objective"]["init_args"]["beta"] == 6.0
    assert new["objective"]["init_args"]["attack"]["init_args"]["eps"] == 0.1
    assert new["eval_attack"]["init_args"]["steps"] == 10 and new["input_filter"] is None
    old = yaml.safe_load((REPO / "tests" / "frozen_configs" / "default.yaml").read_text())
    (maps,) = [c["init_args"] for c in upgraded(old)["trainer"]["callbacks"]
               if c["class_path"] == "callbacks.FrequencyMapsCallback"]
    assert maps["maps"]["lam"] == 0.1 and maps["maps"]["batch_size"] == 64 and maps["maps"]["solver"] == "fast"
    (before,) = [c["init_args"] for c in old["trainer"]["callbacks"]
                 if c["class_path"] == "callbacks.FrequencyMapsCallback"]
    assert before["max_steps"] == 100 and maps["maps"]["max_steps"] == 5000  # the paper rule's, unused under fast
    assert not set(SOLVER_KEYS) & set(maps)
