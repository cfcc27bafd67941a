"""One run per run folder, claimed atomically: of two `train.py` processes aiming at one folder
exactly one gets it and the other stops at once with one line, having written nothing; runs of one
model started in the same second each get their own default folder; a resume holds the same claim.
Real processes, started together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from digits_zoo.cli import register_resolvers
from digits_zoo.training import run_folders
from digits_zoo.training.run_folders import LOCK_NAME, RunFolderGuard
from tests.conftest import CONFIGS, ROOT
from tests.test_resume import finish, popen_train, wait_for

# one short epoch on the tiny data: 320 training images, 10 batches
QUICK = [
    "data.download=false",
    "data.val_size=200",
    "data.train_size=320",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "+trainer.enable_model_summary=false",
]


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def assert_one_run(folder: Path) -> dict:
    """Everything in `folder` is of one run: the config, Hydra's record, results and checkpoints."""
    results = json.loads((folder / "results.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    hydra_config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    assert results["model"] == config["model"]["name"] == hydra_config["model"]["name"]
    assert results["seed"] == config["seed"] == hydra_config["seed"]
    import torch

    checkpoint = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["model"] == results["model"]
    assert "error" not in (folder / "train.log").read_text()
    return results


@pytest.mark.slow  # real train.py processes at once
def test_of_two_runs_started_together_in_one_folder_exactly_one_gets_it(tiny_data, tmp_path):
    for attempt in range(4):
        run = tmp_path / f"run{attempt}"
        common = [f"data.data_dir={tiny_data}", *QUICK, f"hydra.run.dir={run}"]
        first = popen_train(tmp_path, f"lenet{attempt}", *common, "model=lenet5", "seed=1")
        second = popen_train(tmp_path, f"mlp{attempt}", *common, "model=flatten_mlp", "seed=2")
        errors = {
            name: finish(process, tmp_path, f"{name}{attempt}") for name, process in (("lenet", first), ("mlp", second))
        }
        codes = {"lenet": first.returncode, "mlp": second.returncode}
        assert sorted(codes.values()) == [0, 1], errors
        (winner,) = [name for name, code in codes.items() if code == 0]
        (loser,) = [name for name, code in codes.items() if code == 1]
        line = only_line(errors[loser])
        # refused while the other ran, or after it had finished
        assert f"{run} is in use by train.py, pid" in line or f"{run} already holds a run" in line, line
        assert assert_one_run(run)["model"] == {"lenet": "lenet5", "mlp": "flatten_mlp"}[winner]


@pytest.mark.slow  # real train.py processes at once
def test_runs_of_one_model_started_together_get_their_own_default_folders(tiny_data, tmp_path):
    processes = [
        popen_train(tmp_path, f"seed{seed}", f"data.data_dir={tiny_data}", *QUICK, f"seed={seed}") for seed in (1, 2, 3)
    ]
    for seed, process in zip((1, 2, 3), processes):
        finish(process, tmp_path, f"seed{seed}")
        assert process.returncode == 0, (tmp_path / f"seed{seed}.stderr").read_text()
    folders = sorted(path.parent for path in (tmp_path / "outputs" / "flatten_mlp").glob("*/results.json"))
    assert len(folders) == 3
    assert sorted(assert_one_run(folder)["seed"] for folder in folders) == [1, 2, 3]


HOLD = """
import sys, time
from pathlib import Path
from digits_zoo.training.run_folders import claim
claim(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def test_a_default_name_in_use_or_finished_gets_the_next_free_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = train_config()
    default = Path(cfg.hydra.run.dir)  # outputs/flatten_mlp/<date>_<time>, the same on every read
    # another process holds the default folder; a finished run is in the second name
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / default)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (second := default.with_name(default.name + "_2")).mkdir(parents=True)
        (second / "results.json").write_text("{}")
        RunFolderGuard().on_run_start(config=cfg)
        assert cfg.hydra.run.dir == str(default.with_name(default.name + "_3"))
        assert (second / "results.json").read_text() == "{}"  # untouched
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # real train.py processes at once
def test_a_resume_holds_the_claim_against_the_run_and_a_second_resume(tiny_data, tmp_path):
    run, marks = tmp_path / "run", tmp_path / "marks"
    paced = [
        f"data.data_dir={tiny_data}",
        "data.download=false",
        "data.val_size=200",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run}",
        "+callbacks.pace._target_=tests.test_resume.Pace",
        f"+callbacks.pace.folder={marks}",
        "+callbacks.pace.seconds=0.05",
    ]
    original = popen_train(tmp_path, "original", *paced)
    wait_for(marks / "epoch1-group0", lambda: original.poll() is None)
    # while the run goes on, resuming it is refused (the run is held in its second epoch meanwhile:
    # on a loaded machine it could otherwise finish before the resume starts)
    (marks / "hold").touch()
    early = popen_train(tmp_path, "early", f"resume={run}")
    line = only_line(finish(early, tmp_path, "early"))
    assert early.returncode == 1 and f"{run} is in use by train.py, pid {original.pid} on" in line
    original.send_signal(signal.SIGKILL)  # stopped in epoch 2: last.ckpt holds epoch 1
    original.wait()
    # two resumes at once: one continues the run, the other is refused; the one that gets the run
    # is held at its first batch until the other has ended
    resumes = [popen_train(tmp_path, f"resume{i}", f"resume={run}") for i in range(2)]
    deadline = time.monotonic() + 300
    while all(process.poll() is None for process in resumes) and time.monotonic() < deadline:
        time.sleep(0.05)
    (marks / "hold").unlink()
    errors = [finish(process, tmp_path, f"resume{i}") for i, process in enumerate(resumes)]
    assert sorted(process.returncode for process in resumes) == [0, 1], errors
    (refused,) = [error for error, process in zip(errors, resumes) if process.returncode == 1]
    assert f"{run} is in use by train.py, pid" in only_line(refused)
    assert assert_one_run(run)["epochs"] == 3


@pytest.mark.parametrize("override", ["hydra.run.dir={run}", "resume={run}"])
def test_a_folder_held_by_another_process_is_refused_in_process(tmp_path, override, monkeypatch, capsys):
    """The refusal is one line and exit 1, before Hydra writes anything in the folder."""
    run = tmp_path / "held"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in run.iterdir())
        monkeypatch.setattr(sys, "argv", [str(ROOT / "train.py"), override.format(run=run)])
        import runpy

        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
        assert exit_info.value.code == 1
        assert f"{run} is in use by train.py, pid {holder.pid} on" in only_line(capsys.readouterr().err)
        assert sorted(p.name for p in run.iterdir()) == before  # no .hydra/, no train.log
    finally:
        holder.kill()
        holder.wait()


def user_folder(path: Path) -> dict[str, bytes]:
    """A folder of a user's own files (one named as a run's would be); returns its contents."""
    (path / "notes").mkdir(parents=True)
    (path / "config.yaml").write_text("mine: true\n")
    (path / "notes" / "todo.txt").write_text("keep me\n")
    return contents(path)


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


@pytest.mark.slow  # a real train.py process
def test_a_folder_of_a_users_own_files_is_refused_and_left_as_it_was(tmp_path):
    folder = tmp_path / "mine"
    before = user_folder(folder)
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=fast", "hydra.run.dir=mine"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert only_line(result.stderr) == (
        "error: mine is not empty and is not a train.py run folder (it holds config.yaml, notes); a run writes its "
        "config.yaml, checkpoints and logs there, so choose a new or empty folder with hydra.run.dir=DIR (by default "
        "each run gets its own dated folder)"
    )
    assert contents(folder) == before


def train_config(*overrides: str):
    """configs/train.yaml with its `hydra` node, as train.py composes it."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def guard_config(run_dir: Path, *overrides: str):
    return train_config(f"hydra.run.dir={run_dir}", *overrides)


@pytest.mark.parametrize(
    "leftovers",
    [[], [".run.lock", ".hydra/config.yaml", "train.log", "config.yaml"]],
    ids=["empty", "left by a refused start"],
)
def test_an_empty_folder_or_one_left_by_a_refused_start_is_claimed(tmp_path, leftovers):
    run = tmp_path / "run"
    run.mkdir()
    for name in leftovers:
        (run / name).parent.mkdir(exist_ok=True)
        (run / name).write_text("")
    cfg = guard_config(run)
    guard = RunFolderGuard()
    guard.on_run_start(config=cfg)
    try:
        assert run.resolve() in run_folders._held  # claimed by this process
        assert (run / LOCK_NAME).read_text().startswith(f"train.py, pid {os.getpid()} on")
    finally:
        guard.on_run_end(config=cfg)


def test_the_root_folder_is_refused_and_a_default_name_passes_over_a_users_folder(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        RunFolderGuard().on_run_start(config=guard_config(Path("/")))
    assert exit_info.value.code == 1 and not Path("/.run.lock").exists()
    assert only_line(capsys.readouterr().err).startswith("error: / is not empty and is not a train.py run folder")

    monkeypatch.chdir(tmp_path)
    cfg = train_config()
    default = Path(cfg.hydra.run.dir)
    before = user_folder(tmp_path / default)  # (a user's folder named as a run's would be)
    guard = RunFolderGuard()
    guard.on_run_start(config=cfg)
    guard.on_run_end(config=cfg)
    assert cfg.hydra.run.dir == str(default.with_name(default.name + "_2"))
    assert contents(tmp_path / default) == before


def test_checking_a_resume_folder_leaves_no_hydra_config_behind(tmp_path, capsys):
    # (it sets Hydra's config for load_resume; left set, it would be the config of the next job in this
    # process, e.g. an eval.py run in a notebook)
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(SystemExit):  # no config.yaml: not a run folder to resume
        RunFolderGuard().on_run_start(config=guard_config(run, f"resume={run}"))
    assert not HydraConfig.initialized()
    assert only_line(capsys.readouterr().err).startswith(f"error: resume={run}: no config.yaml")
