"""`digits-zoo COMMAND` (and `python -m digits_zoo`): one command for every feature, and a command
that refuses its arguments does so before torch is imported, leaving nothing behind."""

import json
import subprocess
import sys
from importlib import import_module

import pytest

from digits_zoo import arguments, command
from digits_zoo.cli import config_dir
from digits_zoo.training.checks import MONITORED
from tests.conftest import CONFIGS, ROOT, tiny_overrides

# Runs a command as a user does, then says on stderr's last line whether torch was imported
PROBE = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__") if sys.argv[0].endswith(".py") else runpy.run_module("digits_zoo", run_name="__main__")
finally:
    print("torch imported" if "torch" in sys.modules else "torch not imported", file=sys.stderr)
"""


def refused(cwd, *args: str) -> str:
    """The one error line of `args` (train.py ..., eval.py ..., or -m train ...) run in `cwd`."""
    result = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    *lines, torch = result.stderr.splitlines()
    assert result.returncode in (1, 2), result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert torch == "torch not imported", lines[0]
    assert list(cwd.iterdir()) == [], "a refused command left something behind"
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["model=vgg"], "unknown model=vgg; did you mean vgg_bn?"),
        (["trainer.max_epochs=-1"], "trainer.max_epochs must be a whole number of at least 1, got -1"),
        (["seed=abc"], "seed must be a whole number"),
        (["optimizer.lr=0"], "optimizer.lr must be a finite number above 0"),
        (["modle=lenet5"], "modle"),
        (["+trainer.callbacks=[]"], "trainer.callbacks would be ignored"),
        (["data=mnist_c"], "data=mnist_c is the robustness benchmark, a test set"),
    ],
)
@pytest.mark.parametrize("entry", [["train.py"], ["-m", "train"]])
def test_a_refused_training_command_imports_no_torch_and_leaves_nothing(tmp_path, entry, args, expected):
    entry = [str(ROOT / "train.py")] if entry == ["train.py"] else ["digits_zoo", "train"]
    assert expected in refused(tmp_path, *entry, *args)


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "eval needs model_source=SOURCE"),
        (["model_source=vgg_bn", "+model=lenet5"], "eval.py does not use model"),
        (["model_source=vgg_bn", "+epochs=3"], "eval.py does not use epochs"),
    ],
)
def test_a_refused_evaluation_imports_no_torch_and_leaves_nothing(tmp_path, args, expected):
    assert expected in refused(tmp_path, str(ROOT / "eval.py"), *args)
    assert expected in refused(tmp_path, "digits_zoo", "eval", *args)


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["model.name=single_dense"],
            "model single_dense: got an unexpected keyword argument 'hidden'; it takes num_classes",
        ),
        (
            ["+trainer.max_epoch=3"],
            "trainer.max_epoch is not an argument of Lightning's Trainer; did you mean trainer.max_epochs?",
        ),
        (
            ["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/nope"],
            "callbacks.early_stopping.monitor=val/nope is not a metric the run logs; choose one of",
        ),
    ],
)
@pytest.mark.slow  # real processes that import torch and Lightning
def test_what_lightning_or_a_model_would_refuse_later_is_refused_before_the_run_folder(
    tmp_path, tiny_data, args, expected
):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *tiny_overrides(tiny_data), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {expected}") and len(result.stderr.splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_metrics_a_callback_may_monitor_are_those_the_run_logs(make_cfg):
    from digits_zoo.training.run import train

    history = train(make_cfg("trainer.max_epochs=1"))["module"].history  # {epoch: {metric: value}}
    assert set(MONITORED) <= set(history[0])


def test_a_model_source_that_is_not_there_is_refused_before_the_run_folder(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "eval.py"), "model_source=vgg"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: vgg: no such checkpoint file, run folder or shipped model; ")
    assert "did you mean vgg_bn?" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_command_lists_every_command_and_each_has_its_help(capsys):
    assert command.main(["--help"]) == 0
    listing = capsys.readouterr().out
    for name, (what, module) in command.COMMANDS.items():
        assert f"  {name}" in listing and what in listing
        if module is not None:  # (train's and eval's help are Hydra's: tested below)
            with pytest.raises(SystemExit) as exit_info:
                import_module(module).main(["--help"])
            assert exit_info.value.code == 0
            usage = capsys.readouterr().out
            assert usage.startswith(f"usage: digits-zoo {name}"), usage


@pytest.mark.parametrize("name", list(arguments.PARSERS))
def test_help_and_a_mistyped_option_are_answered_before_torch_is_imported(tmp_path, name):
    for args, code in ((["--help"], 0), (["--no-such-option"], 2)):
        result = subprocess.run(
            [sys.executable, "-c", PROBE, "digits_zoo", name, *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == code, result.stderr
        assert result.stderr.splitlines()[-1] == "torch not imported"
        assert (result.stdout if code == 0 else result.stderr).startswith(f"usage: digits-zoo {name}")


@pytest.mark.parametrize("name", ["train", "eval"])
def test_train_and_eval_help_is_a_sentence_then_the_options(name):
    result = subprocess.run(
        [sys.executable, "-m", "digits_zoo", name, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"digits-zoo {name}: ")
    assert f"usage: digits-zoo {name}" in result.stdout and "powered by Hydra" not in result.stdout


def test_an_unknown_command_says_which_was_meant(capsys):
    assert command.main(["trian"]) == 2
    assert capsys.readouterr().err == (
        "error: unknown command 'trian'; did you mean train? commands: " + ", ".join(command.COMMANDS) + "\n"
    )


def test_digits_zoo_train_is_train_py(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    overrides = ["model=single_dense", "trainer.max_epochs=1", f"hydra.run.dir={run}", *tiny_overrides(tiny_data)]
    assert command.main(["train", *overrides]) == 0
    assert json.loads((run / "results.json").read_text())["model"] == "single_dense"
    assert (run / "train.log").is_file()  # the job's name is train's, however it was started


def test_the_configs_are_the_checkouts_here():
    assert config_dir() == CONFIGS
