"""Losses on logits. `cross_entropy` is what TensorFlow-Keras trains for the seed's sigmoid models;
`normalized_sigmoid` is the literal Keras formula used by its other backends."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from digits_zoo.errors import ConfigError, check_number

KERAS_EPSILON = 1e-7


def normalized_sigmoid(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(clip(sigma(z_y) / sum_j sigma(z_j), eps, 1 - eps)), computed in log space for stability."""
    log_sigmoid = F.logsigmoid(logits)
    log_p = log_sigmoid.gather(1, target[:, None]).squeeze(1) - log_sigmoid.logsumexp(dim=1)
    return -log_p.clamp(math.log(KERAS_EPSILON), math.log1p(-KERAS_EPSILON)).mean()


LOSSES = {"cross_entropy": F.cross_entropy, "normalized_sigmoid": normalized_sigmoid}


def training_loss(loss: str, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss `loss` that training minimises, its targets smoothed by `label_smoothing` (torch's: that share
    of each target spread evenly over the classes; cross_entropy only). A ConfigError for a wrong pair."""
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if not check_number("label_smoothing", label_smoothing, positive=False) < 1:
        raise ConfigError(f"label_smoothing must be below 1, got {label_smoothing!r}")
    if not label_smoothing:
        return LOSSES[loss]
    if loss != "cross_entropy":
        raise ConfigError(f"label_smoothing smooths cross_entropy's targets, and loss={loss}; drop one of the two")
    return partial(F.cross_entropy, label_smoothing=label_smoothing)
