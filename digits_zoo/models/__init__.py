"""The zoo: the registry, every model module of this package and the shipped weights
(`digits_zoo.models.pretrained`).

Every module here is imported on import (found with pkgutil), so a new model is one file: no import
line to add, and registration never depends on import order.
"""

from __future__ import annotations

import importlib
import pkgutil

from digits_zoo.models.base import Classifier
from digits_zoo.models.registry import create_model, list_models, register_model

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Classifier", "create_model", "list_models", "register_model"]
