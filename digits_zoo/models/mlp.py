"""The seed's dense networks and the softmax variant from its future-work list."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from digits_zoo.models.base import Classifier, glorot_dense
from digits_zoo.models.registry import register_model

IMAGE_PIXELS = 28 * 28


class MLP(Classifier):
    """Dense(hidden, relu) layers and a Dense(num_classes) head on flattened 28x28 images.

    `flatten_layer=True` makes the flattening a layer of the network (the seed's Flatten model);
    otherwise the input is reshaped to 784 pixels first, as the seed does to its data.
    """

    def __init__(
        self,
        hidden: list[int] | tuple[int, ...] = (),
        num_classes: int = 10,
        output_activation: str = "sigmoid",
        flatten_layer: bool = False,
        in_features: int = IMAGE_PIXELS,
    ):
        widths = [in_features, *hidden]
        super().__init__(widths[-1], num_classes, output_activation)
        layers: list[nn.Module] = [nn.Flatten()] if flatten_layer else []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [glorot_dense(nn.Linear(fan_in, fan_out)), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.flatten_layer = flatten_layer

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x if self.flatten_layer else x.flatten(1))


@register_model
def single_dense(num_classes: int = 10) -> MLP:
    """Seed model 1: Dense(10, sigmoid) on the 784 pixels."""
    return MLP(hidden=(), num_classes=num_classes, output_activation="sigmoid")


@register_model
def two_layer_mlp(hidden: int = 100, num_classes: int = 10) -> MLP:
    """Seed model 2: Dense(100, relu), Dense(10, sigmoid) on the 784 pixels."""
    return MLP(hidden=(hidden,), num_classes=num_classes, output_activation="sigmoid")


@register_model
def flatten_mlp(hidden: int = 100, num_classes: int = 10) -> MLP:
    """Seed model 3: Flatten(28x28), Dense(100, relu), Dense(10, sigmoid)."""
    return MLP(hidden=(hidden,), num_classes=num_classes, output_activation="sigmoid", flatten_layer=True)


@register_model
def softmax_mlp(hidden: int = 100, num_classes: int = 10) -> MLP:
    """The seed's future work: `flatten_mlp` with a softmax output instead of sigmoid."""
    return MLP(hidden=(hidden,), num_classes=num_classes, output_activation="softmax", flatten_layer=True)


@register_model
def mlp_bn_dropout(hidden: int = 100, dropout: float = 0.2, num_classes: int = 10) -> MLP:
    """The seed's future work: `flatten_mlp` with batch-norm and dropout, and a softmax output."""
    model = MLP(hidden=(hidden,), num_classes=num_classes, output_activation="softmax", flatten_layer=True)
    flatten, dense, relu = model.features
    model.features = torch.nn.Sequential(flatten, dense, torch.nn.BatchNorm1d(hidden), relu, torch.nn.Dropout(dropout))
    return model
