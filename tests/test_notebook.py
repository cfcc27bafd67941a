"""The tour notebook: it runs top to bottom, and the committed copy holds a real run's outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.idx import write_dataset

TOUR = ROOT / "notebooks" / "tour.ipynb"


def data_root(tmp_path: Path) -> Path:
    """The real data where it holds both MNIST and Fashion-MNIST, else the tests' own (6,000
    training images, so that the default 5,000-image validation split leaves some to train on)."""
    real = os.environ.get("DIGITS_ZOO_DATA_DIR")
    if real and all((Path(real) / name / "raw").is_dir() for name in ("MNIST", "FashionMNIST")):
        return Path(real)
    for name in ("MNIST", "FashionMNIST"):
        write_dataset(tmp_path / "data", n_train=6000, name=name)
    return tmp_path / "data"


@pytest.mark.slow  # runs the notebook in a Jupyter kernel
def test_the_tour_runs_top_to_bottom_on_a_small_budget(tmp_path):
    out = tmp_path / "tour.ipynb"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "notebooks" / "execute.py"),
            str(TOUR),
            "--small",
            "--out",
            str(out),
            "--cwd",
            str(tmp_path),
            "--timeout",
            "600",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DIGITS_ZOO_DATA_DIR": str(data_root(tmp_path))},
    )
    assert result.returncode == 0, result.stderr  # a failed cell: one line naming its error
    cells = [cell for cell in json.loads(out.read_text())["cells"] if cell["cell_type"] == "code"]
    assert all(cell["execution_count"] for cell in cells)
    assert not [o for cell in cells for o in cell["outputs"] if o["output_type"] == "error"]
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [  # every run left its folder
        "flatten_mlp",
        "keras_cnn",
        "lenet5",
        "single_dense",
        "softmax_mlp",
        "two_layer_mlp",
    ]


def test_the_committed_tour_holds_a_full_runs_outputs():
    cells = [cell for cell in json.loads(TOUR.read_text())["cells"] if cell["cell_type"] == "code"]
    assert [cell["execution_count"] for cell in cells] == list(range(1, len(cells) + 1))  # in order, none skipped
    text = json.dumps(cells)
    assert "55,000 training, 5,000 validation, 10,000 test images" in text  # the real data, not a small budget
    assert '"output_type": "error"' not in text
    assert TOUR.stat().st_size < 1_000_000  # outputs kept small
