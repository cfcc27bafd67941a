"""`python train.py ...` as a user runs it, in a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real train.py processes, a sweep and an Optuna study


def run_train(*overrides, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_train_py_trains_and_writes_the_run_folder(tiny_data, tmp_path):
    result = run_train(
        "model=softmax_mlp",
        f"data.data_dir={tiny_data}",
        "data.val_size=200",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "softmax_mlp" and results["test/acc"] > 0.5
    assert "| softmax_mlp | 79,510 | 1 |" in result.stdout  # the closing summary table
    assert "Traceback" not in result.stderr


def test_missing_data_is_one_line_on_stderr(tmp_path):
    result = run_train(
        f"data.data_dir={tmp_path / 'empty'}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MNIST files not found"), result.stderr
    assert "train-images-idx3-ubyte" in lines[0] and "DIGITS_ZOO_DATA_DIR" in lines[0]


def test_unknown_model_name_is_one_line_with_the_closest_match(tiny_data, tmp_path):
    result = run_train(
        "model.name=flatten_mpl", f"data.data_dir={tiny_data}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: unknown model 'flatten_mpl'; did you mean 'flatten_mlp'?"), line


def test_a_sweep_ends_with_a_leaderboard_and_the_command_rebuilds_it(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m",
        "model=single_dense,softmax_mlp",
        "seed=1,2",
        f"data.data_dir={tiny_data}",
        "data.val_size=200",
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    table = (sweep / "leaderboard.md").read_text()
    assert table in result.stdout
    # one row per model over its two seeds (the overrides they share are not part of the name)
    groups = [line for line in table.splitlines() if line.startswith(("| single_dense | 2 |", "| softmax_mlp | 2 |"))]
    assert len(groups) == 2 and "Welch's two-sided t-test" in table
    assert len((sweep / "leaderboard.csv").read_text().splitlines()) == 5  # every run

    rebuilt = subprocess.run(
        [
            sys.executable,
            "-m",
            "digits_zoo.leaderboard",
            *map(str, sorted(sweep.glob("[0-9]_*"))),
            "--out",
            str(tmp_path / "board"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert rebuilt.returncode == 0 and rebuilt.stdout == table
    assert (tmp_path / "board" / "leaderboard.csv").is_file()

    missing = subprocess.run(
        [sys.executable, "-m", "digits_zoo.leaderboard", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such folder")


def test_an_optuna_study_maximises_the_best_epochs_validation_accuracy(tiny_data, tmp_path):
    import yaml

    sweep = tmp_path / "study"
    result = run_train(
        "hparams_search=mlp_optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"data.data_dir={tiny_data}",
        "data.val_size=200",
        "debug=fast",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    trials = [json.loads(path.read_text()) for path in sorted(sweep.glob("*/results.json"))]
    assert len(trials) == 3
    study = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert study["best_value"] == max(trial["best_val/acc"] for trial in trials)  # what train.py returned
    assert set(study["best_params"]) == {"optimizer.lr", "data.batch_size", "model.kwargs.hidden"}
    for run in sorted(sweep.glob("[0-9]*_flatten_mlp")):  # each trial trained what the study chose
        chosen = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        assert f"model.kwargs.hidden={config['model']['kwargs']['hidden']}" in chosen
        assert 1e-4 <= config["optimizer"]["lr"] <= 1e-2
    assert "Best parameters" in result.stdout + result.stderr
    assert "setup plugin" not in result.stdout and "GPU available" not in result.stdout  # (alembic's, Lightning's)
    # the trials never read the test set; the leaderboard ranks them by validation, then tests the chosen one, once
    assert all(trial["test/acc"] is None for trial in trials) and "Test accuracy" not in result.stderr
    assert len(list(sweep.glob("*/confusion_matrix.csv"))) == 1  # the chosen trial's, from its test
    chosen = json.loads((sweep / "chosen_trial.json").read_text())
    assert chosen["best_val/acc"] == study["best_value"]
    assert chosen["overrides"] == yaml.safe_load(
        (Path(chosen["run"]) / ".hydra" / "overrides.yaml").read_text()
    )  # exact
    assert (sweep / "leaderboard.md").read_text() in result.stdout
    best = next(line for line in result.stdout.splitlines() if line.startswith("| flatten_mlp "))
    assert f"| {100 * study['best_value']:.2f}% | not run |" in best
    counts = [
        [int(v) for v in row.split(",")[1:]]
        for row in (sweep / Path(chosen["run"]).name / "confusion_matrix.csv").read_text().splitlines()[1:]
    ]
    assert sum(map(sum, counts)) == 300  # the whole test set
    assert chosen["test/acc"] == pytest.approx(sum(counts[i][i] for i in range(10)) / 300, abs=1e-6)
    assert result.stdout.endswith(
        f"Test accuracy of the chosen trial, read once after the search: "
        f"{100 * chosen['test/acc']:.2f}% (test loss {chosen['test/loss']:.4f})\n"
    )


def test_a_study_without_a_validation_split_is_refused_in_one_line(tiny_data, tmp_path):
    result = run_train(
        "hparams_search=mlp_optuna",
        "hydra.sweeper.n_trials=1",
        f"data.data_dir={tiny_data}",
        "data.val_size=0",
        f"hydra.sweep.dir={tmp_path / 'study'}",
        cwd=tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]  # (and Optuna's own log)
    assert line.startswith("error: optimized_metric=val/acc: a search maximises the best epoch's val/acc"), line


def test_freeze_imports_freezes_once_per_process():
    # in a fresh interpreter: freezing the test process would keep its later garbage from collection
    code = (
        "import gc; from digits_zoo.cli import freeze_imports; freeze_imports(); first = gc.get_freeze_count(); "
        "junk = [[] for _ in range(1000)]; freeze_imports(); print(first, gc.get_freeze_count())"
    )
    first, second = map(
        int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert first > 10_000 and second == first  # the imports frozen; the second call froze nothing more
