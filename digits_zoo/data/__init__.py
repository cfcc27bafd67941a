"""The data: `MNISTDataModule` (torchvision's MNIST-like datasets, held in memory as tensors) and
`preprocess` (a user's picture prepared as MNIST's digits were)."""

from digits_zoo.data.mnist import DATASETS, MNISTDataModule

__all__ = ["DATASETS", "MNISTDataModule"]
