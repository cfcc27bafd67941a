"""Real-data tier: the genuine MNIST files from DIGITS_ZOO_DATA_DIR (skips, saying why, without them)."""

import pytest
import torch

from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.training.run import train

pytestmark = pytest.mark.real_data

# The label histograms of the official files.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_counts_and_label_histograms(real_data_dir):
    dm = MNISTDataModule(real_data_dir, download=False, val_size=5000)
    dm.setup()
    fit_y, val_y, test_y = (dm.splits[s][1] for s in ("fit", "val", "test"))
    assert (len(fit_y), len(val_y), len(test_y)) == (55_000, 5_000, 10_000)
    assert (torch.bincount(torch.cat([fit_y, val_y])).tolist(), torch.bincount(test_y).tolist()) == (
        TRAIN_COUNTS,
        TEST_COUNTS,
    )


@pytest.mark.pictures
def test_one_epoch_of_flatten_mlp_reaches_95_percent(real_data_dir, make_cfg, tmp_path):
    output = train(make_cfg("model=flatten_mlp", "trainer.max_epochs=1", "data.val_size=5000", data_dir=real_data_dir))
    assert output["metrics"]["test/acc"] >= 0.95
    score, images, true, pred = output["module"].mistakes  # the most confident mistakes, as plotted
    assert len(images) == 20 and (score >= 0).all() and (true != pred).all()
    assert (tmp_path / "run" / "mistakes.png").stat().st_size > 10_000


def test_fashion_mnist_through_the_same_data_module(real_data_dir):
    if not (real_data_dir / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real-data tier: no FashionMNIST/raw under {real_data_dir}")
    dm = MNISTDataModule(real_data_dir, dataset="FashionMNIST", download=False, val_size=0)
    dm.setup()
    assert torch.bincount(dm.splits["fit"][1]).tolist() == [6000] * 10
    assert torch.bincount(dm.splits["test"][1]).tolist() == [1000] * 10
