"""Load the trained network back from a checkpoint written by `python train.py fit`.

Every classifier in this package records its own class in the checkpoint (`on_save_checkpoint`), so one call
restores a standard, adversarially trained or frequency-masked model without the user naming the class.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from freqmaps.errors import UserInputError

CLASS_KEY = "freqmaps_lightning_module"


def load_network(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The classifier's `model` (pixels in [0, 1] -> logits, a frequency filter included where the module has
    one) from a Lightning checkpoint, in eval mode. Checkpoints without the class record load as a
    StandardClassifier."""
    path = Path(checkpoint)
    if not path.is_file():
        raise UserInputError(
            f"no checkpoint at {path}; train one with `python train.py fit --config configs/<name>.yaml` and pass "
            "its .ckpt (by default under outputs/<project>/<run id>/checkpoints/)"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise UserInputError(f"{path} is not a Lightning checkpoint written by train.py (no state_dict/hparams)")
    module_path, _, name = ckpt.get(CLASS_KEY, "lightning_modules.classifier.StandardClassifier").rpartition(".")
    cls = getattr(importlib.import_module(module_path), name)
    module = cls.load_from_checkpoint(path, map_location=map_location, weights_only=False)
    return module.model.eval()
