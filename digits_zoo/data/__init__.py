"""The data: `MNISTDataModule` (torchvision's MNIST-like datasets, held in memory as tensors), `contract`
(what a data module must offer, and the record of its data in every checkpoint) and `preprocess` (a
user's picture prepared as MNIST's digits were)."""

from digits_zoo.data.contract import DATASETS, DataModule
from digits_zoo.data.mnist import MNISTDataModule

__all__ = ["DATASETS", "DataModule", "MNISTDataModule"]
