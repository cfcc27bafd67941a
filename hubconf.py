"""torch.hub entry points: every registered model, untrained or with its shipped weights.

    torch.hub.load("path/to/digits_zoo", "vgg_bn", source="local", pretrained=True)
    torch.hub.load("OWNER/digits_zoo", "vgg_bn", pretrained=True)   # from GitHub
    torch.hub.list("OWNER/digits_zoo")                              # every registered model

The weights are in the repository (digits_zoo/models/weights/), so a local load needs no network. Only
the entry points are public names here: torch.hub lists every callable without a leading `_`.
"""

from digits_zoo import create_model as _create_model
from digits_zoo import list_models as _list_models

dependencies = ["torch", "torchvision", "safetensors"]


def _entry_point(name: str):
    def load(pretrained: bool = False, **kwargs):
        return _create_model(name, pretrained=pretrained, **kwargs)

    load.__name__ = load.__qualname__ = name
    load.__doc__ = (
        f"digits_zoo's {name}; pretrained=True loads the weights shipped with digits_zoo (checksum "
        "checked). Other keyword arguments go to the model, e.g. num_classes=5 for a fresh 5-class head."
    )
    return load


globals().update({name: _entry_point(name) for name in _list_models()})
