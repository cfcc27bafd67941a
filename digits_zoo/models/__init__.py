"""The zoo. Every model module is imported here so that registration never depends on import order."""

from digits_zoo.models import cnn, mlp  # noqa: F401  (registers the models)
from digits_zoo.models.base import Classifier

__all__ = ["Classifier"]
