"""Files from someone else: a run folder whose config.yaml names what to build, a checkpoint with
pickled code, a checkpoint whose records lie, a malformed results.json, an export to where nothing
can be written. Each is refused (or skipped) in one line, and nothing it asks for happens."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf

from digits_zoo import leaderboard
from digits_zoo.data.contract import RECORD_KEY
from digits_zoo.evaluate import evaluate
from digits_zoo.export import main as export_main
from digits_zoo.models.pretrained import WeightsError, resolve_checkpoint
from digits_zoo.predict import main as predict_main
from digits_zoo.training.messages import user_message
from digits_zoo.training.resume import (
    TRUSTED_VARIABLE,
    ResumeError,
    UntrustedConfigError,
    check_targets,
    load_resume,
    trusted,
)
from digits_zoo.training.run import train
from tests.conftest import CONFIGS, ROOT
from tests.test_evaluate import eval_cfg
from tests.test_leaderboard import write_run

PICTURE = ROOT / "docs" / "examples" / "seven_on_paper.jpg"


def train_py(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def eval_py(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "eval.py"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(process: subprocess.Popen) -> str:
    """The process's only stderr line, which must end it with exit code 1."""
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    (line,) = stderr.strip().splitlines()
    return line


@pytest.fixture
def strangers_run(standardized_run, tmp_path) -> Path:
    """A copy of a finished run folder, as it would come from someone else (its config names where it is)."""
    run = tmp_path / "strangers_run"
    shutil.copytree(standardized_run, run)
    edit_config(run, lambda cfg: cfg["paths"].update(output_dir=str(run)))
    results = json.loads((run / "results.json").read_text())  # (its best checkpoint: the copy's)
    results["best_checkpoint"] = str(run / "checkpoints" / Path(results["best_checkpoint"]).name)
    (run / "results.json").write_text(json.dumps(results))
    return run


def edit_config(run: Path, edit) -> None:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    edit(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


# ---------------------------------------------------------------- a run folder's config.yaml


@pytest.mark.slow  # real train.py and eval.py processes
def test_resume_builds_nothing_that_a_strangers_config_names(strangers_run, tmp_path):
    planted = tmp_path / "planted"
    edit_config(
        strangers_run,
        lambda cfg: cfg["callbacks"].update(
            evil={"_target_": "shutil.copy", "src": str(strangers_run / "config.yaml"), "dst": str(planted)}
        ),
    )
    line = one_error_line(train_py(f"resume={strangers_run}", cwd=tmp_path))
    assert line == (
        f"error: resume={strangers_run}: its config.yaml names callbacks.evil._target_=shutil.copy, which is "
        "not on the list of what digits_zoo builds from a saved config (building it could run any code); "
        f"use only run folders that you made, and to trust a target that you wrote, add it to "
        f"{TRUSTED_VARIABLE} (docs/security.md)"
    )
    assert not planted.exists()


@pytest.mark.parametrize(
    "where, refused",
    [
        (
            lambda cfg, bad: cfg["trainer"].update(plugins=[{"_target_": bad, "_partial_": True}]),
            "trainer.plugins[0]._target_",
        ),
        (
            lambda cfg, bad: cfg["logger"].update(
                csv={"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": ".", "name": {"_target_": bad}}
            ),
            "logger.csv.name._target_",
        ),
        (lambda cfg, bad: cfg.update(hydra={"callbacks": {"x": {"_target_": bad}}}), "hydra.callbacks.x._target_"),
        # an interpolation that decodes to a node with a target: checked as it resolves
        (lambda cfg, bad: cfg["callbacks"].update(x=f"${{oc.decode:'{{_target_: {bad}}}'}}"), "callbacks.x._target_"),
    ],
)
def test_every_target_anywhere_in_the_config_is_checked(where, refused, strangers_run):
    edit_config(strangers_run, lambda cfg: where(cfg, "os.system"))
    with pytest.raises(UntrustedConfigError, match=re.escape(f"names {refused}=os.system,")):
        load_resume(strangers_run, check_overrides=False)


@pytest.mark.parametrize(
    "target",
    [
        "digits_zoo.writes.os.system",  # reachable from a trusted module, but not its own
        "lightning.pytorch.callbacks.model_checkpoint.os.replace",
        "digits_zoo.data.mnist.MNISTDataModule.__init__.__globals__",
        "tests.test_untrusted.subprocess.run",  # under the tests' trusted prefix (tests/conftest.py), not defined there
        "tests.test_resume.Nowhere",
    ],
)
def test_a_trusted_name_is_the_object_itself_not_what_it_reaches(target):
    assert os.environ[TRUSTED_VARIABLE] == "tests."
    assert not trusted(target)


def test_the_variable_trusts_a_users_own_callbacks(monkeypatch):
    assert trusted("tests.test_resume.Pace")  # (the tests' prefix)
    monkeypatch.delenv(TRUSTED_VARIABLE)
    assert not trusted("tests.test_resume.Pace")
    monkeypatch.setenv(TRUSTED_VARIABLE, "other.Thing, tests.test_resume.Pace")
    assert trusted("tests.test_resume.Pace") and not trusted("tests.test_resume.Overdrive")


def test_a_stopped_run_with_a_callback_not_trusted_here_says_how_to_trust_it(strangers_run, monkeypatch):
    from digits_zoo.training.stops import how_to_go_on, run_state

    edit_config(
        strangers_run,
        lambda cfg: cfg["callbacks"].update(mine={"_target_": "tests.test_resume.Pace", "folder": "marks"}),
    )
    monkeypatch.delenv(TRUSTED_VARIABLE)
    line = how_to_go_on(run_state(strangers_run))  # (the end of the line of a run stopped by a signal)
    assert line.startswith(
        f"the run folder cannot be resumed: resume={strangers_run}: its config.yaml names "
        "callbacks.mine._target_=tests.test_resume.Pace, which is not on the list"
    )
    assert line.endswith(f"add it to {TRUSTED_VARIABLE} (docs/security.md)")


def test_a_run_folder_made_before_the_engine_moved_resumes(strangers_run, monkeypatch):
    # what configs/ named before the engine moved into digits_zoo.training (commit 47727c9)
    monkeypatch.delenv("DIGITS_ZOO_TRUSTED_TARGETS")
    old = {
        "model_checkpoint": "digits_zoo.checkpoints.ModelCheckpoint",
        "progress_bar": "digits_zoo.callbacks.progress_bar",
    }
    edit_config(
        strangers_run, lambda cfg: [cfg["callbacks"][key].update(_target_=target) for key, target in old.items()]
    )
    output = train(OmegaConf.create({"resume": str(strangers_run)}))  # finished: the resume tests it again
    assert output["metrics"]["test/acc"] == json.loads((strangers_run / "results.json").read_text())["test/acc"]
    assert any(isinstance(callback, ModelCheckpoint) and callback.monitor for callback in output["trainer"].callbacks)
    assert (
        load_resume(strangers_run).cfg.callbacks.progress_bar._target_ == "digits_zoo.training.callbacks.progress_bar"
    )


def test_every_target_of_the_shipped_configs_is_trusted(monkeypatch):
    monkeypatch.delenv(TRUSTED_VARIABLE)
    # (configs/hydra/ configures Hydra itself: a run's config.yaml holds none of it)
    shipped = [path for path in CONFIGS.rglob("*.yaml") if "hydra" not in path.relative_to(CONFIGS).parts]
    targets = [node for path in shipped for node in _target_values(yaml.safe_load(path.read_text()))]
    assert len(targets) >= 15 and all(trusted(t) for t in targets), [t for t in targets if not trusted(t)]
    check_targets(OmegaConf.create({"x": [{"_target_": t} for t in targets]}), "configs/")


def _target_values(node):
    if isinstance(node, dict):
        yield from ([node["_target_"]] if "_target_" in node else [])
        for value in node.values():
            yield from _target_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _target_values(value)


# ---------------------------------------------------------------- a checkpoint with pickled code


class Payload:
    """Unpickling this runs a shell command that creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def plant_code(checkpoint: Path, marker: Path) -> None:
    """Add pickled code to a real checkpoint, which otherwise stays whole."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.save({**state, "payload": Payload(marker)}, checkpoint)


@pytest.mark.slow  # real train.py and eval.py processes
def test_a_checkpoint_with_code_is_not_loaded_and_the_line_says_so(strangers_run, tiny_data, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    for checkpoint in (strangers_run / "checkpoints").glob("*.ckpt"):
        plant_code(checkpoint, marker)
    best = resolve_checkpoint(strangers_run)

    def expected(path: Path) -> str:
        return (
            f"error: {path} holds pickled objects besides tensors and plain data (posix.system), which could run "
            "code as they load, so it was not loaded; load only checkpoints that you made or that come from "
            "someone you trust (docs/security.md)"
        )

    # over 20 s: two real processes (started together), to see the line a user sees
    resume = train_py(f"resume={strangers_run}", cwd=tmp_path)
    evaluation = eval_py(
        f"model_source={strangers_run}",
        f"data.data_dir={tiny_data}",
        "data.download=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert one_error_line(resume) == expected(strangers_run / "checkpoints" / "last.ckpt")
    assert one_error_line(evaluation) == expected(best)

    assert predict_main([str(PICTURE), "--model", str(strangers_run)]) == 2
    assert export_main([str(strangers_run), "--out", str(tmp_path / "m.onnx")]) == 1
    from digits_zoo.training.checkpoints import AtomicCheckpointIO  # Lightning's own loading, in fit and test

    with pytest.raises(WeightsError) as error:
        AtomicCheckpointIO().load_checkpoint(best)
    assert capsys.readouterr().err.strip().splitlines() == [expected(best), expected(best)]
    assert f"error: {user_message(error.value)}" == expected(best)
    assert not marker.exists()


# ---------------------------------------------------------------- a checkpoint whose records lie


def misrecord(strangers_run: Path, **record) -> Path:
    """The run's best checkpoint, its data module's record changed to `record`."""
    checkpoint = resolve_checkpoint(strangers_run)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state[RECORD_KEY].update(record)
    torch.save(state, checkpoint)
    return checkpoint


@pytest.mark.parametrize(
    "record, field",
    [
        (
            {"normalization": [0.0, 0.0]},
            "digits_zoo/data.normalization=[0.0, 0.0], not a finite mean and a std above 0",
        ),
        ({"normalization": [float("nan"), 1.0]}, "digits_zoo/data.normalization=[nan, 1.0], not a finite mean"),
        ({"normalization": "0.1,0.3"}, "digits_zoo/data.normalization='0.1,0.3', not a finite mean"),
        ({"dataset": "__builtins__"}, "digits_zoo/data.dataset='__builtins__', not one of MNIST, FashionMNIST, KMNIST"),
    ],
)
def test_a_checkpoint_whose_records_lie_is_refused_naming_the_field(
    record, field, strangers_run, tiny_data, tmp_path, capsys
):
    checkpoint = misrecord(strangers_run, **record)
    assert predict_main([str(PICTURE), "--model", str(checkpoint)]) == 2
    assert export_main([str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 1
    for line in capsys.readouterr().err.strip().splitlines():
        assert line.startswith(f"error: {checkpoint}: the checkpoint records {field}") and line.endswith(
            "; the file is damaged or was not written by digits_zoo"
        ), line
    with pytest.raises(WeightsError, match=re.escape(f"{checkpoint}: the checkpoint records {field}")):
        evaluate(eval_cfg(strangers_run, tiny_data, tmp_path / "eval"))
    assert not (tmp_path / "eval" / "results.json").exists()


def test_resume_checks_the_records_of_its_checkpoint(strangers_run):
    last = strangers_run / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    torch.save({**state, RECORD_KEY: {"dataset": "MNIST", "normalization": [0.5, 0.0]}}, last)
    with pytest.raises(
        ResumeError,
        match=re.escape(f"{last}: the checkpoint records digits_zoo/data.normalization=[0.5, 0.0], not a finite"),
    ):
        load_resume(strangers_run, check_overrides=False)


def test_the_demo_refuses_a_lying_checkpoint_in_one_line(strangers_run):
    pytest.importorskip("fastapi", reason="the demo extra is not installed")
    from digits_zoo.demo import checkpoint_models

    checkpoint = misrecord(strangers_run, dataset="__builtins__")
    with pytest.raises(WeightsError, match=r"digits_zoo/data.dataset='__builtins__'"):
        checkpoint_models([str(checkpoint)])


def test_the_shipped_records_pass_the_same_checks():
    from digits_zoo.models.pretrained import manifest, trained_on

    for name, entry in manifest().items():
        mean, std = entry["input"]["mean"], entry["input"]["std"]
        record = {"dataset": entry["dataset"], "normalization": None if mean is None else [mean, std]}
        assert trained_on({RECORD_KEY: record}, name) == (entry["dataset"], None if mean is None else (mean, std))


# ---------------------------------------------------------------- a malformed results.json


def write_malformed(folder: Path, content: bytes) -> Path:
    """A results.json beside the runs that is not what train.py writes (the soak test's fault too)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_bytes(content)
    return folder / "results.json"


def test_a_malformed_results_json_is_skipped_with_a_warning_and_the_table_stands(tmp_path, capsys):
    write_run(tmp_path / "good", "flatten_mlp", 0.97, 1)
    bad = {
        "truncated": (
            b'{"model": "lenet5", "params": 6',
            "not JSON (Expecting ',' delimiter: line 1 column 32 (char 31))",
        ),
        "text": (
            json.dumps(
                {"model": "lenet5", "params": 100, "epochs": 5, "train_seconds": 1.0, "test/acc": "0.99"}
            ).encode(),
            'test/acc is "0.99", not a number',
        ),
        "incomplete": (json.dumps({"model": "lenet5", "params": 100, "test/acc": 0.9}).encode(), "epochs is missing"),
        "evaluation": (
            json.dumps({"model": "lenet5", "source": "x", "test/acc": None}).encode(),
            "test/acc is null, not a number",
        ),
        "list": (b"[1, 2]", "not a JSON object but list"),
        "binary": (b"\xff\xfe\x00", "not JSON ("),
    }
    paths = {name: write_malformed(tmp_path / name, content) for name, (content, _) in bad.items()}
    assert leaderboard.main([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[2].startswith("| flatten_mlp | 100 | 5 |") and len(out.splitlines()) == 3
    warnings = err.strip().splitlines()
    assert len(warnings) == len(bad)
    for (name, (_, why)), line in zip(sorted(bad.items()), sorted(warnings)):
        assert line.startswith(f"warning: skipped {paths[name]}: {why}"), line

    shutil.rmtree(tmp_path / "good")  # only bad files left: no table
    assert leaderboard.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: no results.json in")


# ---------------------------------------------------------------- an export to where nothing can be written


def test_an_export_to_a_path_that_cannot_be_written_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import digits_zoo.export as export_module

    monkeypatch.setattr(export_module, "write_onnx", lambda *args: pytest.fail("exported anyway"))
    (tmp_path / "a_file").touch()
    for out, why in (
        (tmp_path / "nowhere" / "m.onnx", f"the folder {tmp_path / 'nowhere'} does not exist"),
        (tmp_path / "a_file" / "m.onnx", f"the folder {tmp_path / 'a_file'} is a file, not a folder"),
    ):
        assert export_main(["flatten_mlp", "--out", str(out)]) == 1
        assert capsys.readouterr().err == f"error: --out {out}: {why}; choose another path, or create that folder\n"
    monkeypatch.setattr(export_module.os, "access", lambda path, mode: False)  # (as root, every folder is writable)
    assert export_main(["flatten_mlp", "--out", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err == (
        f"error: --out {tmp_path / 'm.onnx'}: the folder {tmp_path} is not writable here; choose another path\n"
    )


def test_a_write_that_fails_anyway_names_the_file_not_the_exporter(tmp_path, capsys, monkeypatch):
    import errno

    import digits_zoo.export as export_module

    def full_disk(network, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(
        export_module.torch.onnx, "export", lambda network, args, path, **kwargs: full_disk(network, path)
    )
    assert export_main(["flatten_mlp", "--out", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot write {tmp_path / 'm.onnx'}: No space left on device; nothing was written\n"
    )
    assert list(tmp_path.iterdir()) == []
