"""digits_zoo: MNIST-like digit classifiers on PyTorch Lightning and Hydra."""

from digits_zoo import models  # noqa: F401  (fills the registry)
from digits_zoo.registry import create_model, list_models, register_model

__all__ = ["create_model", "fit", "list_models", "list_pretrained", "pretrained_info", "register_model"]


def __getattr__(name: str):
    # imported on first use: fit brings Lightning and Hydra's runner; the shipped weights' records
    # (so that `python -m digits_zoo.weights` does not find its own module imported already)
    if name == "fit":
        from digits_zoo.api import fit

        return fit
    if name in ("list_pretrained", "pretrained_info"):
        from digits_zoo import weights

        return getattr(weights, name)
    raise AttributeError(f"module 'digits_zoo' has no attribute {name!r}")
