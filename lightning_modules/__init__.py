"""Thin LightningModules that call the freqmaps core."""
from lightning_modules.checkpoint import load_network
from lightning_modules.classifier import StandardClassifier

__all__ = ["StandardClassifier", "load_network"]
