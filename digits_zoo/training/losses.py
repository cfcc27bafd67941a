"""Losses on logits. `cross_entropy` is what TensorFlow-Keras trains for the seed's sigmoid models;
`normalized_sigmoid` is the literal Keras formula used by its other backends."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

KERAS_EPSILON = 1e-7


def normalized_sigmoid(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log(clip(sigma(z_y) / sum_j sigma(z_j), eps, 1 - eps)), computed in log space for stability."""
    log_sigmoid = F.logsigmoid(logits)
    log_p = log_sigmoid.gather(1, target[:, None]).squeeze(1) - log_sigmoid.logsumexp(dim=1)
    return -log_p.clamp(math.log(KERAS_EPSILON), math.log1p(-KERAS_EPSILON)).mean()


LOSSES = {"cross_entropy": F.cross_entropy, "normalized_sigmoid": normalized_sigmoid}
