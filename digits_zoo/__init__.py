"""digits_zoo: MNIST-like digit classifiers on PyTorch Lightning and Hydra.

The package is layered (pyproject.toml's import-linter contract, checked in CI): the applications
(`python -m digits_zoo.X`, `fit`) use the training engine (`digits_zoo.training`), which uses the
models (`digits_zoo.models`: the zoo, its registry and shipped weights) and the data
(`digits_zoo.data`); everything may use `digits_zoo.errors` and `digits_zoo.writes`.
"""

from importlib.metadata import PackageNotFoundError, version

from digits_zoo.models import create_model, list_models, register_model
from digits_zoo.models.pretrained import list_pretrained, pretrained_info

try:
    __version__ = version("digits_zoo")
except PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "classify",
    "create_model",
    "fit",
    "list_models",
    "list_pretrained",
    "pretrained_info",
    "register_model",
]


def __getattr__(name: str):
    # imported on first use: they bring Lightning (and fit Hydra's runner). (`digits_zoo.predict` is the
    # module of `python -m digits_zoo.predict`, which importing it makes this attribute: hence `classify`.)
    if name == "fit":
        from digits_zoo.api import fit

        return fit
    if name == "classify":
        from digits_zoo.predict import classify

        return classify
    raise AttributeError(f"module 'digits_zoo' has no attribute {name!r}")
