"""The data module's contract: what train() and eval.py need of a data module (checked before a run
writes anything), and the record of its data in every checkpoint, under the project's own key whatever
the data module's class is called (checkpoints of the earlier form, under "MNISTDataModule", still load)."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from digits_zoo.data.contract import LIGHTNING_KEY, RECORD_KEY, check_data_module
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.errors import ConfigError
from digits_zoo.evaluate import evaluate
from digits_zoo.models.pretrained import WeightsError, resolve_checkpoint
from digits_zoo.predict import load_trained
from digits_zoo.predict import main as predict_main
from digits_zoo.training.resume import ResumeError, load_resume
from digits_zoo.training.run import train
from tests.conftest import ROOT, compose_tiny_run
from tests.test_errors import assert_one_line
from tests.test_evaluate import eval_cfg

PICTURE = ROOT / "docs" / "examples" / "seven_on_paper.jpg"


class DigitsData(MNISTDataModule):
    """A data module of another name, as docs/contributing.md suggests for another data set."""


class Incomplete(L.LightningDataModule):
    """A data module that knows its classes and nothing else train() needs."""

    def __init__(self, **settings):
        super().__init__()
        self.num_classes = 10


@pytest.fixture(scope="module")
def subclass_run(tiny_data, tmp_path_factory) -> tuple[Path, dict]:
    """A run folder of a standardised run through DigitsData, and what train() returned."""
    run = tmp_path_factory.mktemp("subclass") / "run"
    output = train(
        compose_tiny_run(
            tiny_data, run, f"data._target_={__name__}.DigitsData", "data.standardize=true", "trainer.max_epochs=1"
        )
    )
    return run, output


def rewritten(run: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run's best checkpoint, its top-level keys changed by `edit`."""
    state = torch.load(resolve_checkpoint(run), map_location="cpu", weights_only=True)
    edit(state)
    path = tmp_path / "edited.ckpt"
    torch.save(state, path)
    return path


def test_a_renamed_data_modules_run_is_predicted_and_evaluated_as_it_was_trained(subclass_run, tiny_data, tmp_path):
    run, output = subclass_run
    mean, std = output["datamodule"].normalization
    assert load_trained(run).normalization == (mean, std)  # not pixels / 255 alone
    evaluated = evaluate(eval_cfg(run, tiny_data, tmp_path / "eval"))["metrics"]
    # the same best checkpoint on the same test images, standardised as in training
    assert evaluated["normalization"] == [mean, std]
    assert (evaluated["test/acc"], evaluated["test/loss"]) == (
        output["metrics"]["test/acc"],
        output["metrics"]["test/loss"],
    )
    state = torch.load(resolve_checkpoint(run), map_location="cpu", weights_only=True)
    assert state[RECORD_KEY] == {"dataset": "MNIST", "normalization": [mean, std]} and "DigitsData" not in state


def test_eval_py_tests_with_the_data_module_that_data_names(subclass_run, tiny_data, tmp_path):
    run, output = subclass_run
    evaluation = evaluate(eval_cfg(run, tiny_data, tmp_path / "eval", f"+data._target_={__name__}.DigitsData"))
    assert type(evaluation["trainer"].datamodule) is DigitsData
    assert evaluation["metrics"]["test/acc"] == output["metrics"]["test/acc"]


def test_a_checkpoint_of_the_earlier_form_still_loads(subclass_run, tmp_path):
    run, output = subclass_run
    earlier = rewritten(run, tmp_path, lambda state: state.update({LIGHTNING_KEY: state.pop(RECORD_KEY)}))
    assert load_trained(earlier).normalization == output["datamodule"].normalization


def test_a_checkpoint_without_a_record_of_its_data_is_refused_in_one_line(subclass_run, tmp_path, capsys):
    run, _ = subclass_run
    bare = rewritten(run, tmp_path, lambda state: state.pop(RECORD_KEY))
    expected = (
        f"error: {bare}: the checkpoint has no record of the data it was trained on ('digits_zoo/data': its "
        "dataset and normalization), so its inputs cannot be prepared as in training; use a checkpoint that "
        "train.py wrote"
    )
    capsys.readouterr()
    assert predict_main([str(PICTURE), "--model", str(bare)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [expected]
    with pytest.raises(WeightsError, match="no record of the data it was trained on"):
        evaluate(eval_cfg(bare, tmp_path, tmp_path / "eval"))


def test_resume_refuses_a_last_checkpoint_without_a_record_of_its_data(subclass_run, tmp_path):
    run = shutil.copytree(subclass_run[0], tmp_path / "run")
    last = run / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    del state[RECORD_KEY]
    torch.save(state, last)
    with pytest.raises(ResumeError, match=f"{last}: the checkpoint has no record of the data"):
        load_resume(run, check_overrides=False)


def test_a_data_module_without_the_contracts_members_is_refused_in_one_line(run_cli, tmp_path):
    code, stderr = run_cli(f"data._target_={__name__}.Incomplete")
    assert_one_line(
        code,
        stderr,
        "data module Incomplete lacks check_files, dataset_cls, has_validation, normalization, "
        'splits, which train.py and eval.py use; see "Add a dataset" in docs/contributing.md',
    )
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


@pytest.mark.parametrize(
    "datamodule, expected",
    [
        (object(), "data._target_ builds object, which is not a LightningDataModule"),
        (Incomplete(), "data module Incomplete lacks check_files, dataset_cls"),
    ],
)
def test_the_contract_names_what_is_missing(datamodule, expected):
    with pytest.raises(ConfigError, match=expected):
        check_data_module(datamodule)
    check_data_module(DigitsData(download=False))  # a subclass meets it
