"""`digits_zoo.fit`: the command line's run, from Python."""

import csv
import json
import logging
import subprocess
import sys

import pytest

import digits_zoo
from digits_zoo.errors import ConfigError
from digits_zoo.models import registry
from digits_zoo.models.mlp import MLP
from tests.conftest import ROOT

TINY = ["trainer.max_epochs=1", "data.val_size=200", "data.download=false", "trainer.log_every_n_steps=1"]


@pytest.fixture
def keep_logging():
    """Hydra's job logging takes over the root logger (as in train.py); give it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], root.level = handlers, level


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.pictures
@pytest.mark.slow  # a real train.py process
def test_fit_makes_the_run_that_train_py_makes(tiny_data, tmp_path, keep_logging):
    overrides = [f"data.data_dir={tiny_data}", *TINY]
    cli = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "model=lenet5", *overrides, f"hydra.run.dir={tmp_path / 'cli'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr

    run = digits_zoo.fit("lenet5", [*overrides, f"hydra.run.dir={tmp_path / 'api'}"])

    assert run.run_dir == tmp_path / "api"
    assert files(run.run_dir) == files(tmp_path / "cli")  # .hydra/, train.log, checkpoints, pictures, ...
    cli_results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert {k: run.metrics[k] for k in ("test/acc", "test/loss", "best_val/acc")} == {
        k: cli_results[k] for k in ("test/acc", "test/loss", "best_val/acc")
    }  # the same training, bit for bit
    assert run.metrics == json.loads((run.run_dir / "results.json").read_text())
    assert "Summary" in (run.run_dir / "train.log").read_text()
    assert run.cfg.model.name == "lenet5" and "hydra" not in run.cfg
    assert run.module.model.num_classes == 10 and run.trainer.current_epoch == 1
    assert run.datamodule.splits["test"][1].numel() == 300


def test_fit_gives_a_default_run_folder_of_its_own(tiny_data, tmp_path, monkeypatch, keep_logging):
    monkeypatch.chdir(tmp_path)
    first = digits_zoo.fit("single_dense", [f"data.data_dir={tiny_data}", *TINY])
    second = digits_zoo.fit("single_dense", [f"data.data_dir={tiny_data}", *TINY])
    assert first.run_dir.parent == second.run_dir.parent == tmp_path / "outputs" / "single_dense"
    assert first.run_dir != second.run_dir  # within one second: the second gets ..._2


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        ("flatten_mpl", [], "unknown model=flatten_mpl; did you mean flatten_mlp?"),
        (None, ["trainer.max_epoch=3"], "unknown config key trainer.max_epoch; did you mean trainer.max_epochs?"),
        ("lenet5", ["seed=1,2"], "Ambiguous value for argument 'seed=1,2'"),
        (
            None,
            ["hparams_search=mlp_optuna"],
            "fit runs one job; for a sweep or an hparams_search preset use digits-zoo train -m",
        ),
        (
            None,
            ["lr_find=true"],
            "fit trains and tests; for the learning-rate range test use digits-zoo train lr_find=true",
        ),
    ],
)
def test_fit_refuses_what_it_cannot_run_in_one_line(model, overrides, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        digits_zoo.fit(model, overrides)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_fit_trains_a_model_registered_here_without_a_config_file(tiny_data, tmp_path, monkeypatch, keep_logging):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))  # (registered for this test only)

    @digits_zoo.register_model
    def my_mlp(width: int = 4, num_classes: int = 10) -> MLP:
        return MLP(hidden=(width,), num_classes=num_classes)

    overrides = [f"data.data_dir={tiny_data}", *TINY, f"hydra.run.dir={tmp_path / 'run'}", "+model.kwargs.width=6"]
    run = digits_zoo.fit("my_mlp", overrides)

    assert run.cfg.model.name == "my_mlp" and run.cfg.model.kwargs == {"width": 6}
    assert run.module.model.num_features == 6 and run.metrics["model"] == "my_mlp"


def test_fit_quiet_prints_nothing_and_train_log_has_the_log(tiny_data, tmp_path, capfd, keep_logging):
    run = digits_zoo.fit("single_dense", [f"data.data_dir={tiny_data}", *TINY, f"hydra.run.dir={tmp_path}"], quiet=True)
    assert capfd.readouterr() == ("", "")
    log = (run.run_dir / "train.log").read_text()
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in log  # Lightning's lines, as train.py's train.log has
    assert "Summary" in log and "| single_dense |" in log


def test_fit_history_is_each_epochs_metrics_as_the_run_logged_them(tiny_data, tmp_path, keep_logging):
    overrides = [f"data.data_dir={tiny_data}", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path}"]
    run = digits_zoo.fit("single_dense", overrides, quiet=True)

    logged: dict[int, dict] = {}  # csv/metrics.csv: an epoch's training and validation means, in rows of their own
    with open(run.run_dir / "csv" / "metrics.csv", newline="") as file:
        for row in csv.DictReader(file):
            for key in ("train/acc", "train/loss", "val/acc", "val/loss"):
                if row.get(key):
                    logged.setdefault(int(row["epoch"]) + 1, {"epoch": int(row["epoch"]) + 1})[key] = float(row[key])
    assert run.history == [pytest.approx(logged[1]), pytest.approx(logged[2])]
    assert list(run.history[0]) == ["epoch", "train/acc", "train/loss", "val/acc", "val/loss"]
