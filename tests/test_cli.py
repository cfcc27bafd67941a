"""`python train.py ...` as a user runs it, in a real subprocess."""

import json
import subprocess
import sys

from tests.conftest import ROOT


def run_train(*overrides, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_train_py_trains_and_writes_the_run_folder(tiny_data, tmp_path):
    result = run_train(
        "model=softmax_mlp", f"data.data_dir={tiny_data}", "data.val_size=200", "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["model"] == "softmax_mlp" and results["test/acc"] > 0.5
    assert "| softmax_mlp | 79,510 | 1 |" in result.stdout  # the closing summary table
    assert "Traceback" not in result.stderr


def test_missing_data_is_one_line_on_stderr(tmp_path):
    result = run_train(f"data.data_dir={tmp_path / 'empty'}", "data.download=false",
                       f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MNIST files not found"), result.stderr
    assert "train-images-idx3-ubyte" in lines[0] and "DIGITS_ZOO_DATA_DIR" in lines[0]


def test_unknown_model_name_is_one_line_with_the_closest_match(tiny_data, tmp_path):
    result = run_train("model.name=flatten_mpl", f"data.data_dir={tiny_data}", f"hydra.run.dir={tmp_path / 'run'}",
                       cwd=tmp_path)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: unknown model 'flatten_mpl'; did you mean 'flatten_mlp'?"), line


def test_a_sweep_ends_with_a_leaderboard_and_the_command_rebuilds_it(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train("-m", "model=single_dense,softmax_mlp", f"data.data_dir={tiny_data}", "data.val_size=200",
                       "trainer.max_epochs=1", "trainer.log_every_n_steps=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = (sweep / "leaderboard.md").read_text()
    assert table in result.stdout
    rows = [line for line in table.splitlines() if line.startswith("| single_dense") or line.startswith("| softmax_mlp")]
    assert len(rows) == 2
    assert len((sweep / "leaderboard.csv").read_text().splitlines()) == 3

    rebuilt = subprocess.run([sys.executable, "-m", "digits_zoo.leaderboard", str(sweep / "0_single_dense"),
                              str(sweep / "1_softmax_mlp"), "--out", str(tmp_path / "board")],
                             capture_output=True, text=True, cwd=ROOT)
    assert rebuilt.returncode == 0 and rebuilt.stdout == table
    assert (tmp_path / "board" / "leaderboard.csv").is_file()

    missing = subprocess.run([sys.executable, "-m", "digits_zoo.leaderboard", str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no such folder")
