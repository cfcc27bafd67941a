"""`digits_zoo.classify(source, pictures)`: predicting from Python in one call, and a model's `transforms()`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import digits_zoo
from digits_zoo.data.preprocess import prepare_image, to_tensor
from digits_zoo.errors import DigitsZooError
from digits_zoo.models import create_model
from digits_zoo.predict import Prediction, load_trained, main
from tests.conftest import ROOT
from tests.test_predict import drawing

SHIPPED = "flatten_mlp"  # a shipped model: no training needed


@pytest.fixture(scope="module")
def seven(tmp_path_factory):
    """A 7 in dark ink on light paper, as a file."""
    path = tmp_path_factory.mktemp("pictures") / "seven.png"
    Image.fromarray(drawing(ink=30, paper=235)).save(path)
    return path


def cli_json(*args: str, capsys) -> list[dict]:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_each_kind_of_picture_is_read_as_the_command_reads_its_file(seven, capsys):
    (expected,) = cli_json(str(seven), "--model", SHIPPED, capsys=capsys)
    grey = np.asarray(Image.open(seven))
    digit = prepare_image(seven)
    kinds = {
        "str": str(seven),
        "Path": seven,
        "PIL image": Image.open(seven),
        "grey uint8 array": grey,
        "grey float array in [0, 1]": grey / 255.0,
        "RGB array": np.stack([grey] * 3, axis=-1),
        "prepared 28x28 tensor, uint8": torch.from_numpy(digit),
        "prepared 1x28x28 tensor, pixels / 255": to_tensor([digit])[0],
    }
    for kind, picture in kinds.items():
        result = digits_zoo.classify(SHIPPED, picture)
        assert isinstance(result, Prediction), kind  # one picture in, one result out
        assert (result.digit, result.label) == (expected["digit"], str(expected["digit"])), kind
        assert round(result.probability, 6) == expected["probability"], kind
        assert len(result.probabilities) == 10 and result.probabilities[result.digit] == result.probability, kind
        top3 = sorted(range(10), key=lambda i: -result.probabilities[i])[:3]
        assert top3 == [t["digit"] for t in expected["top3"]], kind

    # several in, a list out, in their order, from one batch
    results = digits_zoo.classify(SHIPPED, list(kinds.values()))
    assert [r.digit for r in results] == [expected["digit"]] * len(kinds)
    batch = digits_zoo.classify(SHIPPED, to_tensor([digit, digit]))  # an (N, 1, 28, 28) tensor is N pictures
    assert isinstance(batch, list) and [r.probability for r in batch] == [results[0].probability] * 2
    assert digits_zoo.classify(SHIPPED, []) == []


def test_a_loaded_model_is_used_as_it_is(seven):
    trained = load_trained(SHIPPED)
    assert digits_zoo.classify(trained, seven) == digits_zoo.classify(SHIPPED, seven) == trained.classify(seven)


def test_a_clothing_model_gives_its_class_names(fashion_run, seven):
    run, _ = fashion_run
    classes = torchvision.datasets.FashionMNIST.classes
    results = digits_zoo.classify(run, [seven, seven])
    assert all(r.label == classes[r.digit] for r in results)  # e.g. "Sneaker", not a digit


def test_the_transform_of_a_standardized_run_is_what_the_command_feeds_the_network(
    standardized_run, seven, monkeypatch, capsys
):
    fed = []
    original = digits_zoo.predict.probabilities

    def recording(network, images):
        fed.append(images)
        return original(network, images)

    monkeypatch.setattr(digits_zoo.predict, "probabilities", recording)
    (expected,) = cli_json(str(seven), "--model", str(standardized_run), capsys=capsys)

    trained = load_trained(standardized_run)
    transform = trained.transforms()
    assert transform.normalization == trained.normalization and trained.normalization is not None
    pixels = transform(seven)
    assert pixels.shape == (1, 28, 28) and pixels.min() < 0  # standardised, as in training
    assert torch.equal(pixels, fed[0][0])
    assert torch.equal(transform(Image.open(seven)), pixels)
    result = digits_zoo.classify(trained, seven)
    assert (result.digit, round(result.probability, 6)) == (expected["digit"], expected["probability"])


def test_a_shipped_models_transform_is_pixels_over_255(seven):
    transform = load_trained(SHIPPED).transforms()
    assert transform.normalization is None
    assert torch.equal(transform(seven), to_tensor([prepare_image(seven)])[0])


@pytest.mark.parametrize(
    "pictures, message",
    [
        ("missing.png", "missing.png: no such file"),
        (["missing.png"], "missing.png: no such file"),
        (np.zeros((5, 28, 28)), "got an array of shape (5, 28, 28); give several pictures as a list"),
        ([np.full((40, 30), 255, np.uint8)], "picture 0: no digit found (the picture is blank)"),
        (torch.zeros(3, 28, 28), "got (3, 28, 28)"),
        (torch.full((28, 28), 255.0), "expected a tensor of pixels / 255 (floats in [0, 1]) or uint8 pixels"),
        (42, "expected a picture (a file path, PIL image, numpy array or tensor), got int"),
    ],
)
def test_a_picture_that_cannot_be_read_is_a_one_line_error(pictures, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DigitsZooError) as raised:
        digits_zoo.classify(SHIPPED, pictures)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_network_alone_is_refused_saying_what_to_give():
    with pytest.raises(DigitsZooError, match="give its shipped name, run folder or checkpoint"):
        digits_zoo.classify(create_model(SHIPPED, pretrained=True), np.zeros((28, 28)))


def test_probabilities_of_a_picture_rather_than_pixels_says_to_classify_it(seven):
    with pytest.raises(DigitsZooError, match=r"an \(N, 1, 28, 28\) tensor; for pictures use .classify\(pictures\)"):
        load_trained(SHIPPED).probabilities(Image.open(seven))


@pytest.mark.slow  # (a fresh interpreter)
def test_classify_is_there_also_after_the_predict_module_was_imported(seven):
    script = (
        "import sys, digits_zoo; assert 'lightning' not in sys.modules; import digits_zoo.predict; "
        f"print(digits_zoo.classify({SHIPPED!r}, {str(seven)!r}).digit, digits_zoo.predict.main.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(digits_zoo.classify(SHIPPED, seven).digit), "main"]
    assert "classify" in digits_zoo.__all__
