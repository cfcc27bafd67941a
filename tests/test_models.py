import math

import pytest
import torch

from digits_zoo import create_model, list_models

ALL_MODELS = list_models()


@pytest.fixture(params=ALL_MODELS)
def model(request):
    torch.manual_seed(0)
    return create_model(request.param)


def test_output_shape_and_finite_logits(model):
    logits = model(torch.rand(5, 1, 28, 28))
    assert logits.shape == (5, model.num_classes)
    assert torch.isfinite(logits).all()


def test_gradients_reach_every_parameter(model):
    model(torch.rand(8, 1, 28, 28)).logsumexp(dim=1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_features_and_head_compose_to_forward(model):
    model.eval()  # dropout off
    x = torch.rand(4, 1, 28, 28)
    features = model.forward_features(x)
    assert features.shape == (4, model.num_features)
    assert torch.equal(model.forward_head(features, pre_logits=True), features)
    assert torch.allclose(model.forward_head(features), model(x))
    assert model.get_classifier() is model.head


def test_reset_classifier_keeps_dtype_and_can_drop_the_head(model):
    model = model.to(torch.float64)
    model.reset_classifier(3)
    assert model.num_classes == 3
    assert model(torch.rand(2, 1, 28, 28, dtype=torch.float64)).shape == (2, 3)
    assert model.get_classifier().weight.dtype == torch.float64
    model.reset_classifier(0)
    assert model(torch.rand(2, 1, 28, 28, dtype=torch.float64)).shape == (2, model.num_features)


def test_probabilities_follow_the_declared_output_activation(model):
    logits = torch.randn(6, model.num_classes)
    probabilities = model.probabilities(logits)
    expected = torch.sigmoid(logits) if model.output_activation == "sigmoid" else logits.softmax(dim=1)
    assert torch.allclose(probabilities, expected)


@pytest.mark.parametrize(
    "name, params, activation",
    [
        ("single_dense", 7_850, "sigmoid"),
        ("two_layer_mlp", 79_510, "sigmoid"),
        ("flatten_mlp", 79_510, "sigmoid"),
        ("softmax_mlp", 79_510, "softmax"),
    ],
)
def test_seed_models_match_keras(name, params, activation):
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params  # as Keras' model.summary()
    assert model.output_activation == activation
    for layer in [m for m in model.modules() if isinstance(m, torch.nn.Linear)]:
        fan_out, fan_in = layer.weight.shape
        limit = math.sqrt(6 / (fan_in + fan_out))  # Glorot-uniform bound, zero biases
        assert layer.weight.abs().max() <= limit and layer.weight.abs().max() > 0.9 * limit
        assert not layer.bias.any()


def test_summary_shows_every_layer_with_its_sizes_and_leaves_the_model_as_it_was(model):
    model.features.eval()  # a mix of modes, as when the features are frozen
    modes = [layer.training for layer in model.modules()]
    weights = {key: value.clone() for key, value in model.state_dict().items()}

    summary = model.summary()

    assert summary.layer_names == ["model", *(f"model.{name}" for name, _ in model.named_modules() if name)]
    assert summary.in_sizes[0] == [1, 1, 28, 28] and summary.out_sizes[0] == [1, model.num_classes]
    assert summary.total_parameters == sum(p.numel() for p in model.parameters())
    assert [layer.training for layer in model.modules()] == modes
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())  # (batch norm too)


def test_summary_of_a_seed_model_has_keras_layers_and_counts():
    summary = create_model("flatten_mlp").summary()
    rows = dict(zip(summary.layer_names, zip(summary.layer_types, summary.param_nums, summary.out_sizes)))
    assert rows["model.features.1"] == ("Linear", 78_500, [1, 100])  # Keras: dense (None, 100) 78500
    assert rows["model.head"] == ("Linear", 1_010, [1, 10])  # dense_1 (None, 10) 1010
    assert "79.5 K    Total params" in str(summary)
