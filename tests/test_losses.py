import math

import torch

from digits_zoo.training.losses import normalized_sigmoid


def keras_formula(logits, target, eps=1e-7):
    """What Keras computes on a sigmoid output outside TensorFlow: normalise, clip, log."""
    p = torch.sigmoid(logits)
    p = (p / p.sum(dim=1, keepdim=True)).clamp(eps, 1 - eps)
    return -p.gather(1, target[:, None]).log().mean()


def test_normalized_sigmoid_is_the_keras_formula():
    torch.manual_seed(0)
    logits, target = torch.randn(64, 10, dtype=torch.float64) * 4, torch.randint(0, 10, (64,))
    assert torch.allclose(normalized_sigmoid(logits, target), keras_formula(logits, target))


def test_normalized_sigmoid_clips_like_keras():
    logits = torch.full((1, 10), -50.0, dtype=torch.float64)
    logits[0, 3] = 50.0
    assert math.isclose(normalized_sigmoid(logits, torch.tensor([0])).item(), -math.log(1e-7), rel_tol=1e-9)
    assert torch.isfinite(normalized_sigmoid(logits.float() * 100, torch.tensor([0])))
