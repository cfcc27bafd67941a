import importlib
import shutil
import sys

import pytest
from torch import nn

import digits_zoo
import digits_zoo.models
from digits_zoo import create_model, list_models, register_model
from digits_zoo.errors import ConfigError, UnknownModelError
from digits_zoo.models.registry import _MODELS

SEED_MODELS = {"single_dense", "two_layer_mlp", "flatten_mlp", "softmax_mlp"}


def test_seed_models_are_registered_on_import():
    assert set(digits_zoo.list_models()) >= SEED_MODELS


def test_a_module_in_the_zoos_folder_is_imported_so_a_model_is_one_file(tmp_path, monkeypatch):
    # the zoo's __init__ in a folder beside a new module, and no line naming it
    zoo = tmp_path / "another_zoo"
    zoo.mkdir()
    shutil.copy(digits_zoo.models.__file__, zoo / "__init__.py")
    (zoo / "new_model.py").write_text(
        "from torch import nn\n\nfrom digits_zoo.models.registry import register_model\n\n\n"
        "@register_model\n"
        "def a_model_in_its_own_file():\n    return nn.Linear(1, 1)\n"
    )
    monkeypatch.syspath_prepend(tmp_path)
    try:
        importlib.import_module("another_zoo")
        assert "a_model_in_its_own_file" in list_models()
    finally:
        _MODELS.pop("a_model_in_its_own_file", None)
        for name in ("another_zoo", "another_zoo.new_model"):
            sys.modules.pop(name, None)


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


def test_arguments_a_model_does_not_take_are_one_line_before_anything_is_built():
    with pytest.raises(ConfigError, match=r"^model lenet5: got an unexpected keyword argument 'widht'; it takes "):
        create_model("lenet5", widht=3)
