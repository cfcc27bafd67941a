"""The contract every zoo model follows (in the manner of timm)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"sigmoid": torch.sigmoid, "softmax": lambda logits: logits.softmax(dim=-1)}


def glorot_dense(layer: nn.Linear) -> nn.Linear:
    """Keras' Dense defaults: Glorot-uniform kernel, zero bias (torch's own default differs)."""
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Classifier(nn.Module):
    """A network split into features and a linear head; `forward` returns logits.

    The output activation is not a layer: it only says how logits become the probabilities a
    user is shown (`probabilities`), so losses always see logits.
    """

    def __init__(self, num_features: int, num_classes: int, output_activation: str):
        super().__init__()
        if output_activation not in ACTIVATIONS:
            raise ValueError(f"output_activation must be one of {sorted(ACTIVATIONS)}, got {output_activation!r}")
        self.num_features = num_features
        self.output_activation = output_activation
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int, **factory) -> nn.Module:
        if num_classes == 0:
            return nn.Identity()
        return glorot_dense(nn.Linear(self.num_features, num_classes, **factory))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for `num_classes` on the same device and dtype; 0 makes a feature extractor."""
        weight = next(self.parameters())
        self.num_classes = num_classes
        self.head = self._make_head(num_classes, device=weight.device, dtype=weight.dtype)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.output_activation](logits)

    def summary(self):
        """Keras' `model.summary()`: Lightning's `ModelSummary` of every layer, with its parameters and
        its input and output sizes for one 28x28 picture. Print it, or show it as a cell's value."""
        from lightning.pytorch import LightningModule
        from lightning.pytorch.utilities.model_summary import ModelSummary

        class Network(LightningModule):  # the summary reads a LightningModule
            def __init__(self, model: Classifier):
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.model(x)

        weight = next(self.parameters())
        network = Network(self).to(weight.device)
        network.example_input_array = torch.zeros(1, 1, 28, 28, dtype=weight.dtype)
        modes = {layer: layer.training for layer in self.modules()}
        try:
            return ModelSummary(network, max_depth=-1)
        finally:  # (it runs the picture in eval mode, then sets one mode for every layer)
            for layer, training in modes.items():
                layer.train(training)
