"""Importing digits_zoo, or calling it from a notebook, leaves the process as it was: warning filters,
Hydra's resolvers, the environment and logging change only while a run runs."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import subprocess
import sys
import warnings
from contextlib import nullcontext

import pytest

import digits_zoo
from digits_zoo.cli import one_line_errors, register_resolvers
from digits_zoo.errors import ConfigError
from digits_zoo.evaluate import evaluate
from tests.conftest import ROOT, tiny_overrides
from tests.process_state import changes, state
from tests.test_evaluate import eval_cfg

# Imports what digits_zoo's modules import from other packages as they load (what that changes is
# theirs), then every digits_zoo module, and prints what those changed.
IMPORT_ALL = """
import ast, importlib, pkgutil
from pathlib import Path
from tests.process_state import changes, state

def imported(node):  # the names a module's own code imports as it loads (not inside functions)
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
            yield from (child.module, *(f"{child.module}.{alias.name}" for alias in child.names))
        elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from imported(child)

for source in Path("digits_zoo").rglob("*.py"):
    for name in imported(ast.parse(source.read_text())):
        if not name.startswith("digits_zoo"):
            try:
                importlib.import_module(name)
            except ImportError:  # a name, not a module
                pass
before = state()
import digits_zoo
for module in pkgutil.walk_packages(digits_zoo.__path__, "digits_zoo."):
    importlib.import_module(module.name)
print(changes(before, state()))
"""


@pytest.mark.slow  # (a fresh interpreter imports every module)
def test_importing_digits_zoo_changes_nothing_in_the_process():
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{}"


def bug():
    raise RuntimeError("a bug keeps its stack trace")


def mistake():
    raise ConfigError("a mistake the user can fix")


@pytest.mark.parametrize("full_error", [None, "0"], ids=["HYDRA_FULL_ERROR unset", "HYDRA_FULL_ERROR set"])
@pytest.mark.parametrize(
    "work, ends", [(lambda: None, None), (mistake, SystemExit), (bug, RuntimeError)], ids=["done", "a mistake", "a bug"]
)
def test_one_line_errors_puts_back_what_it_changes(work, ends, full_error, monkeypatch, capsys):
    if full_error is None:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    else:
        monkeypatch.setenv("HYDRA_FULL_ERROR", full_error)
    monkeypatch.setattr(logging, "raiseExceptions", True)  # (and back after the test, whatever happens)
    stdout = sys.stdout
    with pytest.raises(ends) if ends else nullcontext(), one_line_errors():
        assert os.environ["HYDRA_FULL_ERROR"] == "1" and not logging.raiseExceptions
        work()
    assert os.environ.get("HYDRA_FULL_ERROR") == full_error
    assert logging.raiseExceptions is True and sys.stdout is stdout


def test_fit_and_evaluate_leave_the_process_as_it_was_and_hide_harmless_warnings_while_they_run(tiny_data, tmp_path):
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # (as in a notebook: shown, or hidden by the run itself)
        for module in pkgutil.walk_packages(digits_zoo.__path__, "digits_zoo."):  # (what importing changes is
            importlib.import_module(module.name)  # Lightning's and torch's own: PYTORCH_NVML_BASED_CUDA_CHECK)
        register_resolvers()  # (fit registers the configs' resolver, for good: it is only theirs)
        before = state()
        # 2 Lightning steps of 16 batches (data.steps_per_execution), fewer than log_every_n_steps=50
        run = digits_zoo.fit(
            "single_dense",
            [*tiny_overrides(tiny_data), "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}"],
        )
        evaluate(eval_cfg(run.run_dir, tiny_data, tmp_path / "eval"))
        after = state()
    assert changes(before, after) == {}
    shown = [str(warning.message) for warning in shown]
    assert not [message for message in shown if "LeafSpec" in message or "smaller than the logging" in message], shown
