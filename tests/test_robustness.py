"""The robustness benchmark: MNIST-C's corruptions remade here, cached, and measured by eval.py data=mnist_c."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from digits_zoo.data import mnist_c
from digits_zoo.data.corruptions import CORRUPTIONS, MNIST_C, corrupt
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.errors import ConfigError
from digits_zoo.evaluate import evaluate
from digits_zoo.training.robustness import PREFIX, measure
from digits_zoo.training.run import train
from tests.conftest import ROOT
from tests.test_evaluate import eval_cfg


def digits(n: int = 8, seed: int = 0) -> np.ndarray:
    """uint8 (n, 28, 28): a bright bar in the middle of each, at a random height, on black."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for image, row in zip(images, rng.integers(8, 18, size=n)):
        image[row : row + 3, 10:18] = 255
    return images


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_corruption_is_fixed_by_its_seed_and_changes_the_pictures(name):
    images = digits()
    made = corrupt(name, images, np.random.default_rng(1))
    assert made.dtype == np.uint8 and made.shape == images.shape
    assert np.array_equal(made, corrupt(name, images, np.random.default_rng(1)))
    assert not np.array_equal(made, images)


def test_the_geometric_corruptions_do_what_mnist_c_does():
    images = digits(1)
    rng = np.random.default_rng(0)
    moved = corrupt("translate", images, rng)  # 3 pixels along each axis, each way at random
    assert any(np.array_equal(moved, np.roll(images, (dy, dx), axis=(1, 2))) for dy in (-3, 3) for dx in (-3, 3))
    assert corrupt("scale", images, rng).astype(float).sum() < 0.6 * images.astype(float).sum()  # 0.7 x 0.7 as big
    assert np.array_equal(corrupt("brightness", images, rng)[0, 0], np.full(28, 128))  # black + 0.5
    striped = corrupt("stripe", images, rng)
    assert (striped[:, :, :7] == 255).all() and np.array_equal(striped[:, :, 7:21], images[:, :, 7:21])


def test_strokes_get_thicker_and_thinner():
    images = digits()
    ink = images.astype(float).sum()
    assert corrupt("thicker", images, np.random.default_rng(0)).astype(float).sum() > 1.3 * ink
    assert corrupt("thinner", images, np.random.default_rng(0)).astype(float).sum() < 0.9 * ink


def test_image_k_is_the_same_in_a_slice_and_in_the_whole_set(monkeypatch):
    monkeypatch.setattr(mnist_c, "CHUNK", 4)
    images = digits(10)
    for name in ("glass_blur", "fog", "zigzag"):  # draws per pixel, per batch of maps, per picture
        whole = mnist_c.corrupted_test_set(name, images, None, None)
        assert np.array_equal(mnist_c.corrupted_test_set(name, images, 6, None), whole[:6])
        assert not np.array_equal(whole[:4], whole[4:8])  # each chunk its own seed


def test_a_whole_set_is_cached_and_read_back(tmp_path, monkeypatch):
    images = digits(5)
    made = mnist_c.corrupted_test_set("stripe", images, None, tmp_path)
    assert (tmp_path / f"mnist_c-v{mnist_c.VERSION}" / "stripe.npy").is_file()

    def fails(*args):
        raise AssertionError("made again")

    monkeypatch.setattr(mnist_c, "corrupt", fails)
    assert np.array_equal(mnist_c.corrupted_test_set("stripe", images, None, tmp_path), made)
    assert np.array_equal(mnist_c.corrupted_test_set("stripe", images, 2, tmp_path), made[:2])


def test_a_slice_is_not_cached(tmp_path):
    mnist_c.corrupted_test_set("stripe", digits(5), 2, tmp_path)
    assert not any(tmp_path.rglob("*.npy"))


@pytest.mark.parametrize(
    "names, limit, message", [(["fgo"], None, "unknown corruption 'fgo'"), (None, 0, "data.limit")]
)
def test_bad_choices_are_refused(names, limit, message):
    with pytest.raises(ConfigError, match=message):
        mnist_c.test_sets(torch.from_numpy(digits(2)), names, limit, None)


class Brightest(nn.Module):
    """Reads a picture as 1 when its brightest pixel is white, else 0."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # (where the benchmark finds the device)

    def forward(self, x):
        white = (x.amax(dim=(1, 2, 3)) > 0.99).float()
        return torch.stack([1 - white, white], 1)


def test_measure_reports_each_corruption_and_the_mean_of_mnist_c_only_when_whole():
    network, images, labels = Brightest(), torch.from_numpy(digits(4)), torch.ones(4, dtype=torch.long)
    some = measure(network, None, images, labels, ["stripe", "thinner"])
    assert some == {
        "test_images": 4,
        "test/acc": 1.0,
        PREFIX + "stripe": 1.0,
        PREFIX + "thinner": some[PREFIX + "thinner"],
    }
    every = measure(network, None, images, labels)
    assert every[PREFIX + "mean"] == pytest.approx(np.mean([every[PREFIX + name] for name in MNIST_C]))
    assert PREFIX + "mean" not in measure(network, None, images, labels, limit=2)  # a slice is a quick look


def test_eval_data_mnist_c_writes_results_and_the_picture(tiny_data, tmp_path):
    cfg = eval_cfg(
        "single_dense", tiny_data, tmp_path, "data=mnist_c", "data.corruptions=[stripe,fog]", "data.limit=50"
    )
    cfg.data.cache_dir = str(tmp_path / "cache")
    metrics = evaluate(cfg)["metrics"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == metrics and saved["dataset"] == "MNIST-C" and saved["test_images"] == 50
    assert {PREFIX + "stripe", PREFIX + "fog"} <= saved.keys() and (tmp_path / "robustness.png").is_file()


@pytest.mark.slow  # a training run and the whole benchmark on its test set
def test_train_robustness_true_records_the_tested_weights_benchmark(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_ZOO_CACHE", str(tmp_path / "cache"))
    output = train(make_cfg("model=single_dense", "trainer.max_epochs=1", "robustness=true"))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    network = output["module"].model
    images, labels = output["datamodule"].read_split(train=False)
    assert (
        results == output["metrics"]
        and results[PREFIX + "mean"] == measure(network, None, images, labels)[PREFIX + "mean"]
    )
    assert (tmp_path / "run" / "robustness.png").is_file() and any((tmp_path / "cache").rglob("fog.npy"))


def test_robustness_true_on_another_dataset_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="robustness=true tests on MNIST-C"):
        train(make_cfg("data=fashion_mnist", "robustness=true"))


# sha256 (first 16 hex digits) of the first 100 images of each test set, as made on the project's machine.
# A change means other images (a corruption's code, or numpy's, scipy's, scikit-image's or torch's
# numbers, changed): raise digits_zoo.data.mnist_c.VERSION so that no cache of the old ones is read.
DIGESTS = {
    "shot_noise": "aa4682bbf1c16476",
    "impulse_noise": "d5213a9ec568af30",
    "glass_blur": "9b0ef3602bfe54f3",
    "motion_blur": "f5885b9272e92f89",
    "shear": "689cee7620b1da6f",
    "scale": "343ae40d9ccd0dbd",
    "rotate": "7edebbe3c94c2554",
    "brightness": "b7840ffd93bfac40",
    "translate": "32115d7fe93441f2",
    "stripe": "d3dc4198890758ba",
    "fog": "692a90bb5f7e27fa",
    "spatter": "8e080e5d1b6cb447",
    "dotted_line": "91c28ecc4f412b3e",
    "zigzag": "8f49081d297e24d2",
    "canny_edges": "22021e3ba95672cd",
    "thinner": "f453070d1abd4b85",
    "thicker": "562cce29716fefd8",
}


@pytest.mark.real_data
def test_the_benchmark_is_the_same_images_on_every_machine(real_data_dir):
    images, _ = MNISTDataModule(real_data_dir, download=False).read_split(train=False)
    made = {
        name: hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]
        for name, x in mnist_c.test_sets(images, None, 100, None).items()
    }
    assert made == DIGESTS


@pytest.mark.real_data
@pytest.mark.slow  # a real eval.py process
def test_eval_py_measures_a_shipped_model_on_a_slice_of_the_benchmark(real_data_dir, tmp_path):
    out = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "eval.py", "model_source=lenet5", "data=mnist_c", "data.limit=300", f"hydra.run.dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "DIGITS_ZOO_DATA_DIR": str(real_data_dir), "DIGITS_ZOO_CACHE": str(tmp_path / "cache")},
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["test_images"] == 300 and set(mnist_c.check_corruptions(None)) == {
        key.removeprefix(PREFIX) for key in results if key.startswith(PREFIX)
    }
    assert PREFIX + "mean" not in results and results["test/acc"] > 0.97  # (a slice: no mean recorded)
    assert "| fog |" in (out / "eval.log").read_text()
