"""The built wheel (not an editable install), installed in a fresh virtual environment outside the
checkout: `digits-zoo` trains, sweeps, evaluates and predicts from any folder with the configs the
wheel carries, a user's own config folder adds to them, and `digits_zoo.fit` trains from Python."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.conftest import ROOT, tiny_overrides

pytestmark = pytest.mark.slow  # a wheel build, a fresh venv and real processes


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """The venv's bin folder. Its dependencies are this environment's (a .pth file: no download, and
    only a site folder's own .pth files are read, so this environment's editable install stays out)."""
    root = tmp_path_factory.mktemp("install")
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*build, str(ROOT)], check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True, timeout=120)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = wheels.glob("digits_zoo-*.whl")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    return python.parent


@pytest.fixture
def run(venv, tmp_path):
    """Run a program of the venv in a folder outside the checkout; its stdout."""
    work = tmp_path / "work"
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(program: str, *args: str) -> str:
        result = subprocess.run(
            [str(venv / program), *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    run.work = work
    return run


def test_the_wheel_is_what_runs_not_the_checkout(run):
    where = run(
        "python", "-c", "import digits_zoo, digits_zoo.cli as cli; print(digits_zoo.__file__, cli.config_dir())"
    )
    package, configs = where.split()
    assert ROOT not in Path(package).parents and Path(configs) == Path(package).parent / "configs"
    assert (Path(configs) / "train.yaml").is_file()


def test_an_installed_wheel_trains_sweeps_evaluates_and_predicts(run, tiny_data):
    tiny = [*tiny_overrides(tiny_data), "trainer.max_epochs=1"]
    # a config folder of the user's own, beside the shipped ones
    mine = run.work / "my_configs" / "experiment"
    mine.mkdir(parents=True)
    (mine / "short.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: single_dense\noptimizer:\n  lr: 0.01\n"
    )
    run("digits-zoo", "train", "--config-dir", "my_configs", "experiment=short", "hydra.run.dir=first", *tiny)
    results = json.loads((run.work / "first" / "results.json").read_text())
    assert results["model"] == "single_dense" and results["test/acc"] > 0.5
    saved = (run.work / "first" / ".hydra" / "config.yaml").read_text()
    assert "lr: 0.01" in saved
    run("digits-zoo", "train", "resume=first", "trainer.max_epochs=2")  # trained further
    assert json.loads((run.work / "first" / "results.json").read_text())["epochs"] == 2

    run("digits-zoo", "train", "-m", "model=single_dense,flatten_mlp", "hydra.sweep.dir=sweep", *tiny)
    assert "flatten_mlp" in (run.work / "sweep" / "leaderboard.md").read_text()

    run("digits-zoo", "eval", "model_source=first", f"data.data_dir={tiny_data}", "hydra.run.dir=tested")
    assert json.loads((run.work / "tested" / "results.json").read_text())["test_images"] == 300

    seven = Image.new("L", (280, 280), "white")
    ImageDraw.Draw(seven).line([(70, 60), (215, 60), (130, 240)], fill="black", width=24)
    seven.save(run.work / "seven.png")
    assert "seven.png: 7 " in run("digits-zoo", "predict", "seven.png")  # the shipped default model
    assert "seven.png: " in run("digits-zoo", "predict", "seven.png", "--model", "first")


def test_an_installed_wheel_fits_from_python(run, tiny_data):
    script = (
        "import sys, digits_zoo\n"
        "fit = digits_zoo.fit('single_dense', sys.argv[1:])\n"
        "print(fit.metrics['model'], fit.run_dir)\n"
    )
    model, run_dir = run("python", "-c", script, *tiny_overrides(tiny_data), "trainer.max_epochs=1").split()[-2:]
    assert model == "single_dense" and (Path(run_dir) / "results.json").is_file()
    assert run.work in Path(run_dir).resolve().parents  # outputs/ in the folder it ran from
