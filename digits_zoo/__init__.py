"""digits_zoo: MNIST-like digit classifiers on PyTorch Lightning and Hydra.

The package is layered (pyproject.toml's import-linter contract, checked in CI): the applications
(`digits-zoo SUBCOMMAND`, `fit`) use the training engine (`digits_zoo.training`), which uses the
models (`digits_zoo.models`: the zoo, its registry and shipped weights) and the data
(`digits_zoo.data`); everything may use `digits_zoo.errors` and `digits_zoo.writes`.

The public names below are imported on first use (PEP 562), so that `import digits_zoo.cli` and a
command that refuses its arguments do not wait a second or more for torch.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digits_zoo")
except PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"

_PUBLIC = {  # name: the module that defines it
    "create_model": "digits_zoo.models",
    "list_models": "digits_zoo.models",
    "register_model": "digits_zoo.models",
    "list_pretrained": "digits_zoo.models.pretrained",
    "pretrained_info": "digits_zoo.models.pretrained",
    "fit": "digits_zoo.api",
    # (`digits_zoo.predict` is the module of `digits-zoo predict`, which importing it makes this
    # package's attribute of that name: hence `classify`)
    "classify": "digits_zoo.predict",
}

__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'digits_zoo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
