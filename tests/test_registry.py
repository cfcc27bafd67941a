import pytest
from torch import nn

import digits_zoo
from digits_zoo import create_model, list_models, register_model
from digits_zoo.errors import UnknownModelError
from digits_zoo.models.registry import _MODELS

SEED_MODELS = {"single_dense", "two_layer_mlp", "flatten_mlp", "softmax_mlp"}


def test_seed_models_are_registered_on_import():
    assert SEED_MODELS <= set(digits_zoo.list_models())


def test_list_models_filters_with_shell_patterns_and_sorts():
    assert list_models("*mlp*") == sorted(name for name in list_models() if "mlp" in name)
    assert list_models() == sorted(list_models())
    assert list_models("no_such_*") == []


def test_create_model_passes_keyword_arguments():
    model = create_model("flatten_mlp", hidden=7, num_classes=3)
    assert model.num_features == 7 and model.num_classes == 3


def test_unknown_name_lists_known_names_and_the_closest():
    with pytest.raises(UnknownModelError) as info:
        create_model("flaten_mlp")
    message = str(info.value)
    assert "did you mean 'flatten_mlp'" in message
    assert all(name in message for name in list_models())


def test_registering_a_name_twice_raises():
    def a_model_for_this_test():
        return nn.Linear(1, 1)

    register_model(a_model_for_this_test)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model(a_model_for_this_test)
    finally:
        del _MODELS["a_model_for_this_test"]
