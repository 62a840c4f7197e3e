"""LightningDataModules, one per data source; all yield pixels in [0, 1] (normalisation lives in the model)."""
from datamodules.base import ImageDataModule
from datamodules.cifar10 import CIFAR10DataModule
from datamodules.digits import DigitsDataModule
from datamodules.imagenette import ImagenetteDataModule
from datamodules.mnist import MNISTDataModule
from datamodules.synthetic import SyntheticFrequencyDataModule

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "ImageDataModule",
    "ImagenetteDataModule",
    "MNISTDataModule",
    "SyntheticFrequencyDataModule",
]
