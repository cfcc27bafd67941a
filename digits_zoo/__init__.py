"""digits_zoo: MNIST-like digit classifiers on PyTorch Lightning and Hydra."""

from digits_zoo import models  # noqa: F401  (fills the registry)
from digits_zoo.registry import create_model, list_models, register_model
from digits_zoo.weights import list_pretrained, pretrained_info

__all__ = ["create_model", "list_models", "list_pretrained", "pretrained_info", "register_model"]
