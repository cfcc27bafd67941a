import math

import torch
import torch.nn.functional as F

from digits_zoo.training.losses import normalized_sigmoid
from digits_zoo.training.module import DigitClassifier


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


def test_label_smoothing_changes_what_training_minimises_and_not_what_is_reported():
    module = DigitClassifier("softmax_mlp", label_smoothing=0.1)
    torch.manual_seed(0)
    logits, target = torch.randn(64, 10) * 4, torch.randint(0, 10, (64,))
    smoothed = module.train_loss_fn(logits, target)
    # torch's definition: (1 - 0.1) of the weight on the true class, 0.1 spread evenly over all ten
    by_hand = 0.9 * F.cross_entropy(logits, target) - 0.1 * logits.log_softmax(dim=1).mean(dim=1).mean()
    assert torch.allclose(smoothed, by_hand) and not torch.allclose(smoothed, F.cross_entropy(logits, target))
    assert torch.equal(module.loss_fn(logits, target), F.cross_entropy(logits, target))  # val and test: plain
    assert DigitClassifier("softmax_mlp").train_loss_fn is F.cross_entropy
