"""The zoo: the registry, every model module (imported here, so that registration never depends on
import order) and the shipped weights (`digits_zoo.models.pretrained`)."""

from digits_zoo.models.registry import create_model, list_models, register_model  # (before the zoo registers)
from digits_zoo.models import cnn, mlp  # noqa: E402, F401  (registers the models)
from digits_zoo.models.base import Classifier  # noqa: E402

__all__ = ["Classifier", "create_model", "list_models", "register_model"]
