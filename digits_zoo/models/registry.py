"""Name -> model factory: `register_model`, `create_model`, `list_models`."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

from torch import nn

from digits_zoo.errors import UnknownModelError
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


def create_model(name: str, pretrained: bool | str | Path = False, **kwargs) -> nn.Module:
    """Build the registered model `name` with the factory's keyword arguments.

    `pretrained=True` loads the weights shipped with digits_zoo (checksum verified); a path loads
    those of a Lightning checkpoint or a train.py run folder. With another `num_classes` than the
    weights', the classifier stays fresh and the rest loads.
    """
    try:
        factory = _MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}; {hint}registered models: {', '.join(list_models())}"
        ) from None
    model = factory(**kwargs)
    if pretrained is not False:
        load_pretrained(model, name, pretrained)
    return model
