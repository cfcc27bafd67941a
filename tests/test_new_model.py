"""A new model is two files: docs/contributing.md's example, added to a copy of this checkout, trains
and passes the fast tier there, with no weights shipped and nothing else changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digits_zoo import list_models
from tests.conftest import ROOT, tiny_overrides

# a block of the section whose first line names the file it is: "# digits_zoo/models/tiny_cnn.py"
FILE_BLOCK = re.compile(r"^```\w+\n# (?P<path>\S+\.(?:py|yaml))\n(?P<code>.*?)^```", re.DOTALL | re.MULTILINE)


def example_files() -> dict[str, str]:
    """The files of docs/contributing.md's "Add a model", by path."""
    page = (ROOT / "docs" / "contributing.md").read_text()
    section = page.split("## Add a model\n", 1)[1].split("\n### ", 1)[0]
    return {match["path"]: f"# {match['path']}\n{match['code']}" for match in FILE_BLOCK.finditer(section)}


def copy_checkout(to: Path) -> None:
    """The files git tracks, as they are in the working tree (no virtual environment, no outputs)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing says which files to copy")
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():  # (a tracked file deleted in the working tree is not)
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, to / name)


@pytest.mark.slow  # the whole fast tier again, in a copy of the checkout: minutes
@pytest.mark.timeout(1800)  # that tier's 2 minutes, run beside the other tiers on a busy machine (7 min seen)
def test_a_model_in_two_files_trains_and_passes_the_fast_tier(tiny_data, tmp_path):
    files = example_files()
    assert sorted(Path(path).parent.as_posix() for path in files) == ["configs/model", "digits_zoo/models"]
    name = Path(next(iter(files))).stem
    checkout = tmp_path / "checkout"
    copy_checkout(checkout)
    for path, text in files.items():
        assert not (checkout / path).exists(), f"{path}: the example must be a new model"
        (checkout / path).write_text(text)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}  # (xdist's worker's)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True, check=False
        )

    # the copy's code, not that of another install of digits_zoo
    where = run("-c", "import json, digits_zoo; print(json.dumps([digits_zoo.__file__, digits_zoo.list_models()]))")
    assert where.returncode == 0, where.stderr
    module, models = json.loads(where.stdout)
    assert Path(module) == checkout / "digits_zoo" / "__init__.py" and name in models and name not in list_models()
    trained = run(
        "train.py",
        f"model={name}",
        *tiny_overrides(tiny_data),
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["model"] == name
    tests = run("-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'fast_tier'}")
    assert tests.returncode == 0, tests.stdout[-5000:]
    assert f"registered without shipped weights: {name}" in tests.stdout  # said, as information
