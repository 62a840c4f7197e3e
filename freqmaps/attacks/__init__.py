"""Attacks found by name: `create_attack("fmn", norm="linf")`, each called as `attack(model, x, y) -> x_adv`.

x: (B, C, H, W) pixels in [0, 1] (models normalise inside), y: (B,) integer labels. Native PyTorch,
batched, usable inside training/validation steps and under autocast; see `base.py` for the contract.
"""
from __future__ import annotations

import inspect

from freqmaps.attacks.apgd import APGD
from freqmaps.attacks.base import Attack, MinimumNormAttack, MinimumNormResult, attack_in_chunks
from freqmaps.attacks.deepfool import DeepFool
from freqmaps.attacks.fgsm import FGSM
from freqmaps.attacks.fmn import FMN
from freqmaps.attacks.pgd import PGD
from freqmaps.attacks.report import AttackReport, attack_report
from freqmaps.attacks.square import Square
from freqmaps.attacks.targeted import TargetedPGD
from freqmaps.errors import UserInputError

_REGISTRY: dict[str, type[Attack]] = {"pgd": PGD, "fgsm": FGSM, "fmn": FMN, "deepfool": DeepFool, "apgd": APGD,
                                   "square": Square, "targeted_pgd": TargetedPGD}

ATTACK_NAMES = tuple(_REGISTRY)


def create_attack(name: str, **kwargs) -> Attack:
    """Build a registered attack with its constructor arguments, e.g. `create_attack("pgd", eps=4/255)`.

    Raises UserInputError naming the known attacks for an unknown name, or the accepted arguments for
    an unknown argument.
    """
    if name not in _REGISTRY:
        raise UserInputError(f"unknown attack {name!r}; choose one of {', '.join(ATTACK_NAMES)}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as error:
        accepted = ", ".join(inspect.signature(_REGISTRY[name]).parameters)
        raise UserInputError(f"{error}; {name!r} accepts {accepted}") from error


__all__ = [
    "APGD", "ATTACK_NAMES", "Attack", "AttackReport", "DeepFool", "FGSM", "FMN", "MinimumNormAttack",
    "MinimumNormResult", "PGD", "Square", "TargetedPGD", "attack_in_chunks", "attack_report", "create_attack",
]
