from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from digits_zoo.api import root_logger_kept
from tests.idx import write_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# the tests' own callbacks (tests.test_resume.Pace, ...) may be built where a test resumes a run
# (digits_zoo.training.resume.check_targets); processes the tests start inherit it
os.environ.setdefault("DIGITS_ZOO_TRUSTED_TARGETS", "tests.")


def pytest_addoption(parser):
    parser.addoption(
        "--all",
        action="store_true",
        help="run every tier: the fast one, the slow one and the real-data one (as CI does)",
    )


def pytest_collection_modifyitems(config, items):
    """Plain `pytest` is the contributor's loop: the slow and real-data tiers skip, saying how to run them."""
    if config.getoption("--all"):
        return
    tiers = {
        "slow": pytest.mark.skip(reason="slow tier: pytest --all runs it"),
        "real_data": pytest.mark.skip(reason="real-data tier: pytest --all runs it, with DIGITS_ZOO_DATA_DIR set"),
    }
    for item in items:
        for marker, skip in tiers.items():
            if marker in item.keywords:
                item.add_marker(skip)
                break


@pytest.fixture(autouse=True)
def _root_logger_kept():
    """A test that runs train.py's or eval.py's __main__ in this process leaves Hydra's job logging on
    the root logger, as those commands do in their own processes, writing to that test's captured
    output, closed after it: every test starts with the root logger as it was."""
    with root_logger_kept():
        yield


@pytest.fixture(autouse=True)
def _run_pictures(request, monkeypatch):
    """Drawing a run's pictures (matplotlib) takes about 1.4 s of a tiny run's 1.8 s here: in this
    process, only the tests marked `pictures` draw them, and the others run everything else
    (fixtures of a wider scope, and train.py processes, draw as users' runs do)."""
    if "pictures" not in request.keywords:
        monkeypatch.setattr("digits_zoo.training.figures.save_run_plots", lambda *args, **kwargs: {})


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A data root with 1,200 training and 300 test images of learnable synthetic digits."""
    return write_dataset(tmp_path_factory.mktemp("tiny_data"))


def tiny_overrides(data_dir: Path) -> list[str]:
    """The overrides of a CPU run on the tiny data set in `data_dir` (the `tiny_data` fixture's)."""
    return [f"data.data_dir={data_dir}", "data.download=false", "data.val_size=200", "trainer.accelerator=cpu"]


def compose_tiny_run(data_dir: Path, output_dir: Path, *overrides: str):
    """`configs/train.yaml` for a short CPU run on `data_dir`, writing to `output_dir`."""
    quiet = ["trainer.max_epochs=2", "+trainer.enable_model_summary=false", "trainer.log_every_n_steps=1"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", [*tiny_overrides(data_dir), *quiet, f"paths.output_dir={output_dir}", *overrides])


@pytest.fixture
def make_cfg(tiny_data, tmp_path):
    """Compose a tiny run's config with overrides, writing to a temporary run folder."""

    def make(*overrides: str, data_dir: Path = tiny_data, run: str = "run"):
        return compose_tiny_run(data_dir, tmp_path / run, *overrides)

    return make


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data root from DIGITS_ZOO_DATA_DIR; the real-data tier skips without it."""
    value = os.environ.get("DIGITS_ZOO_DATA_DIR")
    if not value:
        pytest.skip("real-data tier: set DIGITS_ZOO_DATA_DIR to the folder that holds MNIST/raw")
    root = Path(value)
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real-data tier: no MNIST/raw files under DIGITS_ZOO_DATA_DIR={root}")
    return root


@pytest.fixture(scope="session")
def standardized_run(tiny_data, tmp_path_factory) -> Path:
    """The run folder of a short train.py run on standardised pixels (so its checkpoints record
    the mean and std that predict, eval.py and export must apply)."""
    from digits_zoo.training.run import train

    run = tmp_path_factory.mktemp("standardized") / "run"
    train(compose_tiny_run(tiny_data, run, "data.standardize=true", "trainer.max_epochs=1"))
    return run


def run_train_py(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python train.py ARGS` as its __main__ runs it, in this process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "train.py"), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def run_cli(monkeypatch, capsys, tiny_data, tmp_path):
    """Run train.py's __main__ with these overrides (on the tiny data, in a fresh run folder);
    returns (exit code, stderr)."""

    def run(*overrides: str) -> tuple[int, str]:
        args = [
            f"data.data_dir={tiny_data}",
            "data.val_size=200",
            "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            *overrides,
        ]
        return run_train_py(monkeypatch, capsys, *args)

    return run


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory) -> tuple:
    """(run folder, data root): a short run on a tiny FashionMNIST (250 test images) in a data root
    that also holds a tiny MNIST (300), so that which test set was read shows in the count."""
    from digits_zoo.training.run import train  # (imported by the tests that use it: Lightning)

    data = write_dataset(write_dataset(tmp_path_factory.mktemp("both")), n_test=250, name="FashionMNIST")
    run = tmp_path_factory.mktemp("fashion") / "run"
    train(compose_tiny_run(data, run, "data=fashion_mnist", "trainer.max_epochs=1"))
    return run, data
