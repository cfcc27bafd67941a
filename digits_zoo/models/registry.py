"""Name -> model factory: `register_model`, `create_model`, `list_models`."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import nn

from digits_zoo.errors import ConfigError, UnknownModelError
from digits_zoo.models.pretrained import load_pretrained

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register `factory` under its function name. A name can be registered once."""
    name = factory.__name__
    if name in _MODELS:
        raise ValueError(f"a model named {name!r} is already registered")
    _MODELS[name] = factory
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style `pattern` (e.g. "*mlp*"), sorted."""
    return sorted(fnmatch.filter(_MODELS, pattern))


def create_model(name: str, pretrained: bool | str | Path = False, tta: bool = False, **kwargs) -> nn.Module:
    """Build the registered model `name` with the factory's keyword arguments.

    `pretrained=True` loads the weights shipped with digits_zoo (checksum verified); a path loads
    those of a Lightning checkpoint or a train.py run folder. With another `num_classes` than the
    weights', the classifier stays fresh and the rest loads. `tta=True` wraps the model for reading
    (not training) in test-time augmentation (`digits_zoo.models.tta`).
    """
    check_arguments(name, kwargs)
    model = _MODELS[name](**kwargs)
    if pretrained is not False:
        load_pretrained(model, name, pretrained)
    if tta:
        from digits_zoo.models.tta import TestTimeAugmentation

        return TestTimeAugmentation(model)
    return model


def check_arguments(name: str, kwargs: Mapping) -> None:
    """An UnknownModelError for a name nobody registered, a ConfigError for arguments its factory does
    not take (a keyword left over from another model's config: model.kwargs), before anything is built."""
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownModelError(f"unknown model {name!r}; {hint}registered models: {', '.join(list_models())}")
    parameters = inspect.signature(_MODELS[name]).parameters
    try:
        inspect.Signature(list(parameters.values())).bind(**kwargs)
    except TypeError as error:
        takes = ", ".join(parameters) or "no arguments"
        raise ConfigError(f"model {name}: {error}; it takes {takes} (model.kwargs)") from None
