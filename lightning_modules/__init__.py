"""Thin LightningModules that call the freqmaps core."""
from lightning_modules.adversarial import AdversarialClassifier
from lightning_modules.checkpoint import load_network
from lightning_modules.classifier import StandardClassifier
from lightning_modules.frequency_masked import FrequencyMaskedClassifier

__all__ = ["AdversarialClassifier", "FrequencyMaskedClassifier", "StandardClassifier", "load_network"]
