"""Test-time augmentation: a trained classifier reads a few slightly moved copies of each picture and
their probabilities are averaged. `create_model(NAME, pretrained=True, tta=True)`, `digits-zoo predict
--tta`, `digits-zoo eval tta=true`; docs/robustness.md has what it gains and costs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (degrees, shift right in pixels, shift down in pixels) of each view; the picture itself first
VIEWS = ((0.0, 0.0, 0.0), (-10.0, 0.0, 0.0), (10.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 1.0, 0.0))


class TestTimeAugmentation(nn.Module):
    """`network` (a zoo Classifier) on each of `views` of a batch; `forward` returns the logarithm of the
    mean of the views' probabilities, so that its arg-max and `probabilities` are the averaged reading."""

    __test__ = False  # (not a pytest class)

    def __init__(self, network: nn.Module, views: tuple[tuple[float, float, float], ...] = VIEWS):
        super().__init__()
        self.network, self.views = network, views
        self.num_classes, self.output_activation = network.num_classes, network.output_activation

    def _view(self, x: torch.Tensor, degrees: float, right: float, down: float) -> torch.Tensor:
        if not (degrees or right or down):
            return x
        angle, size = math.radians(degrees), x.shape[-1]
        # grid_sample's grid maps each output pixel to the input (units of half the picture, align_corners=False)
        theta = torch.tensor(
            [
                [math.cos(angle), -math.sin(angle), -2 * right / size],
                [math.sin(angle), math.cos(angle), -2 * down / size],
            ],
            dtype=x.dtype,
            device=x.device,
        ).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        background = x.amin(dim=(1, 2, 3), keepdim=True)  # blank pixels (standardised inputs' too)
        return F.grid_sample(x - background, grid, align_corners=False) + background

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = [self.network.probabilities(self.network(self._view(x, *view))) for view in self.views]
        return torch.stack(probabilities).mean(0).clamp(min=1e-12).log()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.exp()
