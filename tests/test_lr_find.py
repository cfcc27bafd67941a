"""The learning-rate range test: its curve (each step's own loss at the rate shown) and the
suggestion rule (digits_zoo.training.lr_find)."""

from __future__ import annotations

import copy
import csv
import math

import numpy as np
import pytest
import torch

from digits_zoo.training.lr_find import curve_figure, smooth, suggest
from digits_zoo.training.run import train


def test_the_curve_reads_each_steps_own_loss_at_the_rate_shown(make_cfg, tmp_path):
    output = train(make_cfg("lr_find=true", "lr_find_range.num_training=30"))
    rows = list(csv.DictReader(open(tmp_path / "run" / "lr_find.csv")))
    lrs, losses = [float(row["lr"]) for row in rows], [float(row["loss"]) for row in rows]
    # an untrained 10-class model at the lowest rates: about ln 10, not half of it
    assert all(abs(loss - math.log(10)) < 0.25 for loss in losses[:5]), losses[:5]
    # the same steps taken by hand from the starting weights (which the range test restored):
    # point k is the loss of batch k, after one Adam step at each earlier point's rate
    module = output["module"]
    model, loss_fn = copy.deepcopy(module.model), module.loss_fn
    optimizer = torch.optim.Adam(model.parameters(), lr=lrs[0], eps=module.hparams.eps)
    loader = output["datamodule"].train_dataloader()
    loader.sampler.set_epoch(0)
    for k, (x, y) in zip(range(8), loader):
        loss = loss_fn(model(x), y)
        assert loss.item() == pytest.approx(losses[k], rel=1e-5, abs=1e-6), k
        optimizer.param_groups[0]["lr"] = lrs[k]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def synthetic_curve(seed: int = 0, points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Rates from 1e-6 to 1 and a range test's losses: flat at ln 10, falling from 1e-4 to a
    minimum at 1e-2, fastest at 1e-3 (against log rate), then diverging; with batch-to-batch noise."""
    lrs = np.logspace(-6, 0, points)
    x = np.log10(lrs)
    falling = math.log(10) - 0.9 * (1 + np.tanh(2.5 * (x + 3)))  # from ln 10 to about 0.5
    losses = np.where(x > -2, falling[np.searchsorted(x, -2)] + 4.0 * (x + 2) ** 2, falling)
    noise = np.random.default_rng(seed).normal(0, 0.1, points)
    return lrs, losses + noise


def test_the_suggestion_is_where_the_smoothed_loss_falls_fastest_against_log_rate():
    for seed in range(5):
        lrs, losses = synthetic_curve(seed)
        suggestion = suggest(lrs, losses)
        assert 10**-3.3 < suggestion < 10**-2.7, seed  # 1e-3, within the noise
        assert suggestion == float(f"{suggestion:.2g}")  # as printed: two significant digits


def test_a_loss_that_falls_steepest_close_to_its_lowest_point_gets_a_tenth_of_that_point():
    # lenet5's shape: the steepest fall (4e-3) just below the lowest point (8e-3); the suggestion is
    # a tenth of the lowest point's rate. Where the lowest point is far above the steepest fall
    # (vgg_bn's long low plateau), the steepest fall is the lower and is suggested.
    lrs = np.logspace(-6, 0, 100)
    near = np.where(lrs < 8e-3, 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 2.4) * 6)), 0.8 + 20 * (lrs - 8e-3))
    lowest = lrs[np.argmin(smooth(list(near)))]
    assert 8e-3 <= lowest < 2e-2 and suggest(lrs, near) == float(f"{lowest / 10:.2g}") < 2e-3
    far = np.where(lrs < 6e-2, 2.3 - 1.6 / (1 + np.exp(-(np.log10(lrs) + 3) * 4)), 0.7 + 10 * (lrs - 6e-2))
    steepest = suggest(lrs, far)
    assert 10**-3.3 < steepest < 10**-2.7 and steepest < lrs[np.argmin(far)] / 10


def test_the_diverging_end_is_not_the_steepest_fall():
    lrs, losses = synthetic_curve()
    cliff = losses.copy()
    cliff[95:] = [8.0, 3.0, 9.0, 1.0, 20.0]  # diverged: noisy, steep falls between huge losses
    assert suggest(lrs, cliff) == suggest(lrs, losses)


def test_one_lucky_batch_does_not_move_the_suggestion():
    lrs, losses = synthetic_curve()
    lucky = losses.copy()
    lucky[90] = 0.0  # one batch at a diverging rate that happened to score well
    assert suggest(lrs, lucky) == suggest(lrs, losses)


def test_no_suggestion_without_enough_finite_points():
    lrs, losses = synthetic_curve(points=100)
    assert suggest(lrs[:3], losses[:3]) is None
    broken = losses.copy()
    broken[2] = float("nan")  # the curve stops where the loss stopped being a number
    assert suggest(lrs, broken) is None


def test_the_picture_marks_the_suggestion():
    lrs, losses = synthetic_curve()
    suggestion = suggest(lrs, losses)
    figure = curve_figure(lrs, losses, suggestion, "flatten_mlp")
    marked = [line for line in figure.axes[0].lines if line.get_marker() == "o"]
    assert len(marked) == 1 and list(marked[0].get_xdata()) == [suggestion]
    assert f"suggested {suggestion:.2g}" in figure.axes[0].get_title()
