"""Thin LightningModules that call the freqmaps core."""
from lightning_modules.classifier import StandardClassifier

__all__ = ["StandardClassifier"]
