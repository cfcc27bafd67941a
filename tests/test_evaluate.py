"""`python eval.py model_source=SOURCE`: a trained model tested without training."""

import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

from digits_zoo.evaluate import evaluate
from digits_zoo.weights import manifest
from tests.conftest import CONFIGS, ROOT


def eval_cfg(source, data_dir, output_dir, *overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("eval", overrides=[f"model_source={source}", f"data.data_dir={data_dir}", "data.download=false",
                                          "trainer.accelerator=cpu", f"paths.output_dir={output_dir}", *overrides])


def test_eval_py_tests_a_run_folder_as_its_training_did(standardized_run, tiny_data, tmp_path):
    out = tmp_path / "eval"
    result = subprocess.run([sys.executable, "eval.py", f"model_source={standardized_run}", f"data.data_dir={tiny_data}",
                             "data.download=false", f"hydra.run.dir={out}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    trained, evaluated = (json.loads((folder / "results.json").read_text()) for folder in (standardized_run, out))
    # the same best checkpoint on the same test images, standardised with the mean and std of training
    assert (evaluated["test/acc"], evaluated["test/loss"]) == (trained["test/acc"], trained["test/loss"])
    assert evaluated["model"] == "flatten_mlp" and evaluated["test_images"] == 300 and len(evaluated["normalization"]) == 2
    for name in ("confusion_matrix", "confusion_matrix_normalized", "per_class_accuracy", "mistakes"):
        assert (out / f"{name}.png").stat().st_size > 1000
    assert "| flatten_mlp |" in result.stdout + result.stderr


def test_without_the_recorded_normalization_the_same_weights_score_otherwise(standardized_run, tiny_data, tmp_path, monkeypatch):
    recorded = evaluate(eval_cfg(standardized_run, tiny_data, tmp_path / "a"))["metrics"]
    import digits_zoo.evaluate as evaluate_module

    real = evaluate_module.load_trained
    monkeypatch.setattr(evaluate_module, "load_trained", lambda source: real(source).__class__(
        **{**real(source).__dict__, "normalization": None}))
    ignored = evaluate(eval_cfg(standardized_run, tiny_data, tmp_path / "b"))["metrics"]
    assert recorded["test/loss"] != ignored["test/loss"]  # so the first test would see a missing normalization


@pytest.mark.parametrize("source, expected", [
    ("no/such/run", "error: no/such/run: no such checkpoint file or run folder"),
    ("vgg_bnn", "error: vgg_bnn: no such checkpoint file or run folder"),
])
def test_a_source_that_is_not_a_model_is_one_line(source, expected, tiny_data, tmp_path):
    result = subprocess.run([sys.executable, "eval.py", f"model_source={source}", f"data.data_dir={tiny_data}",
                             f"hydra.run.dir={tmp_path / 'eval'}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [expected]


def test_eval_py_without_a_source_says_what_to_give(tmp_path):
    result = subprocess.run([sys.executable, "eval.py", f"hydra.run.dir={tmp_path / 'eval'}"], cwd=ROOT,
                            capture_output=True, text=True)
    (line,) = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.startswith("error: ") and "model_source" in line


@pytest.mark.real_data
@pytest.mark.parametrize("name", sorted(manifest()))
def test_every_shipped_model_evaluates_to_its_manifests_accuracy(name, real_data_dir, tmp_path):
    torch.set_num_threads(2)  # the manifest's numbers were measured with two threads
    metrics = evaluate(eval_cfg(name, real_data_dir, tmp_path))["metrics"]
    assert metrics["test_images"] == 10_000
    assert round(metrics["test/acc"] * 10_000) == round(manifest()[name]["test_acc"] * 10_000)
    assert metrics["test/loss"] == pytest.approx(manifest()[name]["test_loss"], rel=1e-4)
