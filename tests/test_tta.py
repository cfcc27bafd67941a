"""Test-time augmentation: create_model(..., tta=True), predict --tta, eval.py tta=true."""

import json

import pytest
import torch

from digits_zoo import create_model
from digits_zoo.evaluate import evaluate
from digits_zoo.models.tta import VIEWS, TestTimeAugmentation
from digits_zoo.predict import load_trained, main
from tests.test_evaluate import eval_cfg
from tests.test_predict import pictures  # noqa: F401 (a fixture)


def test_one_view_of_the_picture_itself_reads_as_the_network_does():
    network = create_model("lenet5", pretrained=True).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        alone = TestTimeAugmentation(network, ((0.0, 0.0, 0.0),))
        assert torch.allclose(alone.probabilities(alone(x)), network.probabilities(network(x)), atol=1e-6)


@pytest.mark.parametrize(
    "view, moved", [((0.0, 1.0, 0.0), (10, 13)), ((0.0, 0.0, -1.0), (9, 12)), ((90.0, 0.0, 0.0), None)]
)
def test_each_view_moves_the_picture_as_it_says(view, moved):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 12] = 1.0
    out = TestTimeAugmentation(create_model("lenet5"), ())._view(x, *view)
    if moved:  # whole pixels: the ink is moved, not blurred
        assert out[0, 0, moved[0], moved[1]] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    else:  # a quarter turn about the centre: (row 10, column 12) goes to (row 15, column 10)
        assert out[0, 0, 15, 10] == pytest.approx(1.0, abs=1e-4)


def test_the_views_average_probabilities_that_still_sum_to_one():
    model = create_model("lenet5", pretrained=True, tta=True).eval()
    with torch.no_grad():
        probabilities = model.probabilities(model(torch.rand(3, 1, 28, 28)))
    assert isinstance(model, TestTimeAugmentation) and len(model.views) == len(VIEWS)
    assert torch.allclose(probabilities.sum(1), torch.ones(3), atol=1e-5)


def test_predict_tta_reads_through_the_views(pictures, capsys):  # noqa: F811
    assert main([str(pictures["seven.png"]), "--model", "lenet5", "--tta", "--json"]) == 0
    reading = json.loads(capsys.readouterr().out)[0]
    trained = load_trained("lenet5", tta=True)
    assert trained.name == "lenet5 with TTA" and isinstance(trained.network, TestTimeAugmentation)
    assert reading["digit"] == 7


def test_eval_tta_is_reported_apart(tiny_data, tmp_path):
    plain = evaluate(eval_cfg("lenet5", tiny_data, tmp_path / "plain"))["metrics"]
    tta = evaluate(eval_cfg("lenet5", tiny_data, tmp_path / "tta", "tta=true"))["metrics"]
    assert (plain["model"], plain["tta"]) == ("lenet5", False) and (tta["model"], tta["tta"]) == (
        "lenet5 with TTA",
        True,
    )
    assert json.loads((tmp_path / "tta" / "results.json").read_text())["test/acc"] == tta["test/acc"]
