"""`python eval.py model_source=SOURCE`: a trained model tested without training."""

import json
import shlex
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from digits_zoo import list_pretrained
from digits_zoo.evaluate import evaluate
from digits_zoo.models.pretrained import manifest
from digits_zoo.training.checks import EVAL_TAKES
from tests.conftest import CONFIGS, ROOT

SHIPPED = ", ".join(list_pretrained())  # (how a line that names no model lists them)


def eval_cfg(source, data_dir, output_dir, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(
            "eval",
            overrides=[
                f"model_source={source}",
                f"data.data_dir={data_dir}",
                "data.download=false",
                "trainer.accelerator=cpu",
                f"paths.output_dir={output_dir}",
                *overrides,
            ],
        )


def eval_py(data_dir, out, *overrides: str) -> subprocess.CompletedProcess:
    """`python eval.py OVERRIDES` on the tiny data in `data_dir`, its folder `out`."""
    args = [*overrides, f"data.data_dir={data_dir}", "data.download=false", f"hydra.run.dir={out}"]
    return subprocess.run([sys.executable, "eval.py", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow  # a real eval.py process
def test_eval_py_tests_a_run_folder_as_its_training_did(standardized_run, tiny_data, tmp_path):
    out = tmp_path / "eval"
    result = eval_py(tiny_data, out, f"model_source={standardized_run}")
    assert result.returncode == 0, result.stderr
    trained, evaluated = (json.loads((folder / "results.json").read_text()) for folder in (standardized_run, out))
    # the same best checkpoint on the same test images, standardised with the mean and std of training
    assert (evaluated["test/acc"], evaluated["test/loss"]) == (trained["test/acc"], trained["test/loss"])
    assert (
        evaluated["model"] == "flatten_mlp" and evaluated["test_images"] == 300 and len(evaluated["normalization"]) == 2
    )
    for name in ("confusion_matrix", "confusion_matrix_normalized", "per_class_accuracy", "mistakes"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert "| flatten_mlp |" in result.stdout + result.stderr


def test_without_the_recorded_normalization_the_same_weights_score_otherwise(
    standardized_run, tiny_data, tmp_path, monkeypatch
):
    recorded = evaluate(eval_cfg(standardized_run, tiny_data, tmp_path / "a"))["metrics"]
    import digits_zoo.evaluate as evaluate_module

    real = evaluate_module.load_trained
    monkeypatch.setattr(
        evaluate_module,
        "load_trained",
        lambda source: real(source).__class__(**{**real(source).__dict__, "normalization": None}),
    )
    ignored = evaluate(eval_cfg(standardized_run, tiny_data, tmp_path / "b"))["metrics"]
    assert recorded["test/loss"] != ignored["test/loss"]  # so the first test would see a missing normalization


@pytest.mark.slow  # a real eval.py process
@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "no/such/run",
            f"error: no/such/run: no such checkpoint file, run folder or shipped model; shipped: {SHIPPED}",
        ),
        (
            "vgg_bnn",
            f"error: vgg_bnn: no such checkpoint file, run folder or shipped model; did you mean vgg_bn? shipped: {SHIPPED}",
        ),
    ],
)
def test_a_source_that_is_not_a_model_is_one_line(source, expected, tiny_data, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "eval.py",
            f"model_source={source}",
            f"data.data_dir={tiny_data}",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [expected]


@pytest.mark.slow  # a real eval.py process
def test_eval_py_without_a_source_says_what_to_give(tmp_path):
    result = subprocess.run(
        [sys.executable, "eval.py", f"hydra.run.dir={tmp_path / 'eval'}"], cwd=ROOT, capture_output=True, text=True
    )
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith("error: ") and "model_source" in line


def test_without_data_a_model_is_tested_on_the_dataset_it_was_trained_on(fashion_run, tmp_path):
    run, data = fashion_run
    metrics = evaluate(eval_cfg(run, data, tmp_path))["metrics"]
    trained = json.loads((run / "results.json").read_text())
    assert (metrics["dataset"], metrics["trained_on"], metrics["test_images"]) == ("FashionMNIST", "FashionMNIST", 250)
    assert (metrics["test/acc"], metrics["test/loss"]) == (trained["test/acc"], trained["test/loss"])


@pytest.mark.slow  # a real eval.py process
@pytest.mark.parametrize(
    "model, data, trained_on, other",
    [
        ("fashion", "data=mnist", "FashionMNIST", "MNIST"),
        ("single_dense", "data=fashion_mnist", "MNIST", "FashionMNIST"),  # a shipped digits model on clothing
        ("single_dense", "data.dataset=FashionMNIST", "MNIST", "FashionMNIST"),
    ],
)
def test_a_data_other_than_the_models_dataset_is_refused_in_one_line(
    model, data, trained_on, other, fashion_run, tmp_path
):
    run, root = fashion_run
    source = run if model == "fashion" else model
    out = tmp_path / "eval"
    result = subprocess.run(
        [
            sys.executable,
            "eval.py",
            f"model_source={source}",
            data,
            f"data.data_dir={root}",
            "data.download=false",
            f"hydra.run.dir={out}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [
        f"error: {source} was trained on {trained_on}, not {other}; drop data= to test it on {trained_on}, "
        f"or add allow_other_dataset=true to test it on {other} anyway"
    ]
    assert not (out / "results.json").exists()


def test_allow_other_dataset_tests_there_and_records_both_datasets(fashion_run, tmp_path):
    run, data = fashion_run
    metrics = evaluate(eval_cfg(run, data, tmp_path, "data=mnist", "allow_other_dataset=true"))["metrics"]
    assert (metrics["dataset"], metrics["trained_on"], metrics["test_images"]) == ("MNIST", "FashionMNIST", 300)
    assert json.loads((tmp_path / "results.json").read_text())["trained_on"] == "FashionMNIST"


@pytest.mark.slow  # a real eval.py process
@pytest.mark.parametrize(
    "override, named",
    [
        ("+model=lenet5", "model (the model is model_source's"),
        ("model=lenet5", None),  # as for train.py: not Hydra's advice to write +model=lenet5, which would be refused
        ("+experiment=seed_parity", "experiment, loss, optimizer;"),
        ("+foo=1", "foo;"),
    ],
)
def test_a_key_eval_does_not_use_is_refused_in_one_line(override, named, tiny_data, tmp_path):
    out = tmp_path / "eval"
    result = eval_py(tiny_data, out, "model_source=single_dense", override)
    (line,) = result.stderr.strip().splitlines()
    if named is None:
        assert result.returncode == 1 and line == (
            "error: model= is not a config group of this command (eval.py takes "
            "a model only as model_source=); --help lists the groups it takes"
        )
        return
    assert result.returncode == 1 and line.startswith(f"error: eval.py does not use {named}")
    assert "it takes model_source, data=, trainer=, logger=, allow_other_dataset, tta, seed" in line
    assert not (out / "results.json").exists()


@pytest.mark.slow  # a real eval.py process
def test_help_lists_only_the_groups_eval_takes():
    result = subprocess.run([sys.executable, "eval.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("groups (group=option):")[1].split("\n\n")[0]
    listed = {line.split(":")[0]: line for line in section.splitlines() if ": " in line}
    assert sorted(listed) == ["data", "logger", "trainer"]
    for group, line in listed.items():  # the template's lists are those of configs/
        options = sorted(path.stem for path in (CONFIGS / group).glob("*.yaml"))
        assert line.split("   (")[0] == f"{group}: {', '.join(options)}"


def test_takes_is_what_eval_yaml_defines():
    eval_yaml = OmegaConf.load(CONFIGS / "eval.yaml")
    groups = [next(iter(item)) for item in eval_yaml.defaults if item != "_self_"]
    assert sorted(EVAL_TAKES) == sorted({*groups, *(key for key in eval_yaml if key not in ("defaults", "hydra"))})


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(manifest()))
def test_every_shipped_model_evaluates_to_its_manifests_accuracy(name, real_data_dir, tmp_path):
    torch.set_num_threads(2)  # the manifest's numbers were measured with two threads
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):  # tested as its training tested it
        precision = compose("train", overrides=shlex.split(manifest()[name]["command"])[2:]).trainer.precision
    metrics = evaluate(eval_cfg(name, real_data_dir, tmp_path, f"trainer.precision={precision}"))["metrics"]
    assert metrics["test_images"] == 10_000
    assert round(metrics["test/acc"] * 10_000) == round(manifest()[name]["test_acc"] * 10_000)
    assert metrics["test/loss"] == pytest.approx(manifest()[name]["test_loss"], rel=2e-3)
