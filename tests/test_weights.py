"""Weights shipped with the package, and weights from runs, loaded into zoo models.

The shipped weights' tests run over the models that ship weights (the manifest), not over every
registered model: a model is registered, trained and tested before its weights ship, if ever."""

import json
import re
import shutil

import pytest
import torch

from digits_zoo import create_model, list_models, list_pretrained
from digits_zoo import weights as weights_module
from digits_zoo.data.corruptions import CORRUPTIONS, MNIST_C
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.models import pretrained
from digits_zoo.models.pretrained import WeightsError, manifest, sha256
from tests.conftest import ROOT

SHIPPED_MODELS = list_pretrained()


def test_every_shipped_model_is_registered_and_its_weights_come_from_a_documented_run():
    entries = manifest()
    assert SHIPPED_MODELS and set(entries) <= set(list_models())
    for entry in entries.values():
        assert entry["command"].startswith("python train.py") and 0.9 < entry["test_acc"] <= 1
        assert isinstance(entry["seed"], int)
    total = sum((pretrained.SHIPPED / e["file"]).stat().st_size for e in entries.values())
    assert total < 10_000_000


def test_which_registered_models_ship_no_weights():
    """Information, never a failure: shipping weights is a step of its own (docs/contributing.md)."""
    unshipped = sorted(set(list_models()) - set(SHIPPED_MODELS))
    if unshipped:
        pytest.skip(
            f"registered without shipped weights: {', '.join(unshipped)} (to ship: train, then python -m "
            "digits_zoo.weights export RUN_FOLDER and python docs/tables.py)"
        )


def test_every_shipped_model_has_a_row_in_the_zoo_table():
    zoo = (ROOT / "docs" / "models.md").read_text().split("## The zoo\n", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", zoo, re.MULTILINE))
    assert not set(SHIPPED_MODELS) - rows, "a shipped model needs its row in docs/models.md's zoo table"
    assert rows <= set(list_models())


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_weights_load_exactly(name):
    model = create_model(name, pretrained=True)
    shipped = torch.load(pretrained.SHIPPED / manifest()[name]["file"], weights_only=True)
    assert model.state_dict().keys() == shipped.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in shipped.items())


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_another_number_of_classes_gets_a_fresh_head_and_the_rest_loads(name):
    trained = create_model(name, pretrained=True)
    model = create_model(name, pretrained=True, num_classes=3)
    assert model.get_classifier().weight.shape == (3, model.num_features)
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(value, trained.state_dict()[key]), key


def test_a_damaged_weights_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(pretrained.SHIPPED, tmp_path / "weights")
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "weights" / "manifest.json")
    path = tmp_path / "weights" / manifest()["flatten_mlp"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert sha256(path) != manifest()["flatten_mlp"]["sha256"]
    with pytest.raises(WeightsError, match="damaged"):
        create_model("flatten_mlp", pretrained=True)


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_weights_are_tensors_only_and_describe_themselves(name):
    import json

    from safetensors import safe_open
    from torch.utils.flop_counter import FlopCounterMode

    from digits_zoo import pretrained_info

    info = pretrained_info(name)
    path = pretrained.SHIPPED / info["file"]
    assert path.suffix == ".safetensors" and not path.read_bytes().startswith(b"PK")  # not a pickle's zip
    with safe_open(path, framework="pt") as file:  # the file carries its own record
        assert json.loads(file.metadata()["digits_zoo"]) == {name: {k: v for k, v in info.items() if k != "sha256"}}
    model = create_model(name)
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 1, 28, 28))
    assert (
        info["params"] == sum(p.numel() for p in model.parameters()) and info["macs"] == counter.get_total_flops() // 2
    )
    assert info["classes"][7] == "7 - seven" and info["input"]["shape"] == [1, 28, 28] and info["input"]["mean"] is None
    assert info["dataset"] == "MNIST" and info["train_seconds"] > 0 and info["command"].startswith("python train.py")
    assert info["input"]["output"] == f"logits; probabilities through {model.output_activation}"
    with pytest.raises(
        WeightsError, match="no shipped weights for 'lenet'; did you mean lenet5\\? shipped: flatten_mlp"
    ):
        pretrained_info("lenet")


def test_export_ships_a_run_with_its_record_and_normalization(standardized_run, tmp_path, monkeypatch):
    import json

    shutil.copytree(pretrained.SHIPPED, tmp_path / "weights")
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "weights" / "manifest.json")
    (standardized_run / ".hydra").mkdir(exist_ok=True)
    (standardized_run / ".hydra" / "overrides.yaml").write_text("- data.standardize=true\n- data.data_dir=/x\n")
    entry = weights_module.main(["export", str(standardized_run)]) == 0 and manifest()["flatten_mlp"]
    results = json.loads((standardized_run / "results.json").read_text())
    assert entry["command"] == "python train.py data.standardize=true" and entry["test_acc"] == results["test/acc"]
    assert entry["train_seconds"] == results["train_seconds"] and entry["sha256"] == sha256(
        tmp_path / "weights" / entry["file"]
    )
    mean, std = entry["input"]["mean"], entry["input"]["std"]
    assert 0 < mean < 1 and 0 < std < 1
    shipped = create_model("flatten_mlp", pretrained=True).state_dict()
    trained = create_model("flatten_mlp", pretrained=standardized_run).state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in trained.items())


def test_weights_from_a_run_folder_or_checkpoint(make_cfg, tmp_path):
    from digits_zoo.training.run import train

    output = train(make_cfg("model=single_dense", "trainer.max_epochs=1"))
    trained = output["module"].model.state_dict()
    for source in (tmp_path / "run", output["metrics"]["best_checkpoint"]):
        model = create_model("single_dense", pretrained=source)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    with pytest.raises(WeightsError, match="holds single_dense weights, not flatten_mlp"):
        create_model("flatten_mlp", pretrained=tmp_path / "run")
    with pytest.raises(WeightsError, match="no such checkpoint"):
        create_model("single_dense", pretrained=tmp_path / "nowhere")


def test_weights_of_other_model_kwargs_are_refused_by_name(tmp_path):
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in create_model("vgg_bn", width=4).state_dict().items()},
            "hyper_parameters": {"model": "vgg_bn"},
        },
        tmp_path / "narrow.ckpt",
    )
    with pytest.raises(WeightsError, match=r"do not fit vgg_bn: .*features\.0\.weight.*model\.kwargs"):
        create_model("vgg_bn", width=8, pretrained=tmp_path / "narrow.ckpt")


@pytest.mark.real_data
@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_weights_reach_their_recorded_test_accuracy(name, real_data_dir):
    test_x, test_y = _test_set(real_data_dir)
    model = create_model(name, pretrained=True).eval()
    with torch.inference_mode():
        predictions = torch.cat([model(x).argmax(1) for x in test_x.split(1000)])
    accuracy = (predictions == test_y).float().mean().item()
    assert abs(accuracy - manifest()[name]["test_acc"]) <= 0.001


@pytest.mark.real_data
def test_the_default_model_trained_on_smoothed_labels_is_about_90_percent_sure(real_data_dir):
    # docs/robustness.md and docs/predict.md: a digit robust_vgg reads right gets about 0.9, not 1.0
    test_x, _ = _test_set(real_data_dir)
    model = create_model("robust_vgg", pretrained=True).eval()
    with torch.inference_mode():
        top = model(test_x[:1000]).softmax(1).amax(1)
    assert 0.85 < top.median().item() < 0.95


_CACHE = {}


def _test_set(root):
    if root not in _CACHE:
        dm = MNISTDataModule(root, download=False, val_size=0)
        dm.setup()
        _CACHE[root] = dm.splits["test"]
    return _CACHE[root]


def test_linear_probe_trains_only_a_fresh_head_on_pretrained_features(make_cfg):
    from digits_zoo.training.run import train

    shipped = create_model("mlp_bn_dropout", pretrained=True).state_dict()
    output = train(
        make_cfg(
            "model=mlp_bn_dropout",
            "model.pretrained=true",
            "model.reset_head=true",
            "model.freeze_features=true",
            "data.train_size=300",
            "trainer.max_epochs=2",
        )
    )
    state = output["module"].model.state_dict()
    for key, value in state.items():
        if key.startswith("head."):
            assert not torch.equal(value, shipped[key]), key  # fresh, then trained
        else:
            assert torch.equal(value, shipped[key]), key  # weights and batch-norm statistics alike


def test_fine_tuning_starts_from_the_pretrained_features(make_cfg):
    from digits_zoo.training.run import train

    output = train(
        make_cfg(
            "model=lenet5",
            "model.pretrained=true",
            "model.reset_head=true",
            "trainer.max_epochs=1",
            "data.train_size=200",
        )
    )
    shipped = create_model("lenet5", pretrained=True).state_dict()
    changed = [k for k, v in output["module"].model.state_dict().items() if not torch.equal(v, shipped[k])]
    assert changed and any(not k.startswith("head.") for k in changed)


def test_the_weights_command_lists_and_describes_the_shipped_models(capsys):
    import json

    assert weights_module.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == SHIPPED_MODELS
    assert f"{100 * manifest()['vgg_bn']['test_acc']:.2f}%" in lines[SHIPPED_MODELS.index("vgg_bn")]
    assert weights_module.main(["info", "lenet5"]) == 0
    assert json.loads(capsys.readouterr().out) == manifest()["lenet5"]
    assert weights_module.main(["info", "vgg_bnn"]) == 1
    assert capsys.readouterr().err == (
        f"error: no shipped weights for 'vgg_bnn'; did you mean vgg_bn? shipped: {', '.join(SHIPPED_MODELS)}\n"
    )


def test_the_package_says_its_version():
    from importlib.metadata import version

    import digits_zoo

    assert digits_zoo.__version__ == version("digits_zoo")


def test_weights_benchmark_records_the_robustness_of_a_shipped_model(tiny_data, tmp_path, monkeypatch, capsys):
    shutil.copytree(pretrained.SHIPPED, tmp_path / "weights")
    monkeypatch.setattr(pretrained, "SHIPPED", tmp_path / "weights")
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "weights" / "manifest.json")
    monkeypatch.setenv("DIGITS_ZOO_DATA_DIR", str(tiny_data))
    monkeypatch.setenv("DIGITS_ZOO_CACHE", str(tmp_path / "cache"))
    before = manifest()["single_dense"]
    weights_before = pretrained.load_file(pretrained.SHIPPED / before["file"])
    assert weights_module.main(["benchmark", "single_dense"]) == 0
    entry = manifest()["single_dense"]
    assert set(entry["mnist_c"]) == set(CORRUPTIONS) and 0 < entry["mnist_c_mean"] < 1
    assert entry["mnist_c_mean"] == pytest.approx(sum(entry["mnist_c"][name] for name in MNIST_C) / len(MNIST_C))
    assert {k: v for k, v in entry.items() if not k.startswith(("mnist_c", "sha256"))} == {
        k: v for k, v in before.items() if not k.startswith(("mnist_c", "sha256"))
    }
    weights_after = pretrained.shipped_state_dict("single_dense")  # (checks the new SHA-256)
    assert all(torch.equal(weights_after[key], value) for key, value in weights_before.items())
    from safetensors import safe_open

    with safe_open(pretrained.SHIPPED / entry["file"], "pt") as file:  # the record in the file's metadata too
        assert json.loads(file.metadata()["digits_zoo"])["single_dense"]["mnist_c_mean"] == entry["mnist_c_mean"]
    assert "MNIST-C mean" in capsys.readouterr().out


@pytest.mark.real_data
@pytest.mark.parametrize("name", [name for name in SHIPPED_MODELS if "mnist_c" in manifest()[name]])
def test_a_shipped_models_recorded_robustness_reproduces(name, real_data_dir):
    from digits_zoo.data.mnist_c import test_sets
    from digits_zoo.training.robustness import accuracy

    test_x, test_y = _test_set(real_data_dir)
    images = (test_x[:, 0] * 255).round().to(torch.uint8)
    model, info = create_model(name, pretrained=True).eval(), manifest()[name]
    normalization = (info["input"]["mean"], info["input"]["std"]) if info["input"]["mean"] is not None else None
    # the whole test set through two corruptions that are quick to make: exactly the recorded figures
    for corruption, corrupted in test_sets(images, ["brightness", "stripe"], None, None).items():
        assert accuracy(model, normalization, corrupted, test_y, 1000) == pytest.approx(info["mnist_c"][corruption])
