"""Bad input to `python train.py`: one line on stderr that says what is wrong and what to do, exit
code 1, no stack trace, and nothing written before is touched.

Most cases run train.py's real entry point (Hydra and all) in this process, which is quicker than a
subprocess; the last tests run real processes.
"""

import os
import subprocess
import sys

import lightning as L
import pytest
import torch
import torchvision

from tests.conftest import ROOT, compose_tiny_run
from tests.idx import write_dataset


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    """A trained single_dense run: (run folder, its best checkpoint)."""
    from digits_zoo.training.run import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    metrics = train(compose_tiny_run(tiny_data, run_dir, "model=single_dense", "trainer.max_epochs=1"))["metrics"]
    return run_dir, metrics["best_checkpoint"]


def assert_one_line(code: int, stderr: str, *expected: str) -> None:
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model=flaten_mlp"], ["unknown model=flaten_mlp; did you mean flatten_mlp?", "vgg_bn"]),
        (["model.name=flaten_mlp"], ["unknown model 'flaten_mlp'; did you mean 'flatten_mlp'?"]),
        (["trainer=gpx"], ["unknown trainer=gpx; did you mean gpu?"]),
        (
            ["trainer.max_epoch=3"],
            ["unknown config key trainer.max_epoch; did you mean trainer.max_epochs?", "+trainer.max_epoch="],
        ),
        (["modle=lenet5"], ["unknown config key modle; did you mean model?"]),
        (["data.batch_size=[1"], ["no viable alternative at input"]),
        (["data.batch_size=0"], ["data.batch_size must be a whole number of at least 1, got 0"]),
        (["trainer.max_epochs=0"], ["trainer.max_epochs must be a whole number of at least 1, got 0"]),
        (["trainer.max_epochs=null"], ["trainer.max_epochs must be a whole number of at least 1, got None"]),
        (["logger=null"], ["a config group cannot be set to null on the command line", "~logger"]),
        (["+trainer.limit_test_batches=0"], ["trainer.limit_test_batches=0 would skip the test", "best_val/acc"]),
        (["optimizer.lr=0"], ["optimizer.lr must be a finite number above 0, got 0"]),
        (["optimizer.lr=-1e-3"], ["optimizer.lr must be a finite number above 0"]),
        (["data.val_size=1200"], ["data.val_size must be in [0, 1200), got 1200"]),
        (["data.dataset=Fashion"], ["unknown data.dataset 'Fashion'; choose one of MNIST, FashionMNIST"]),
        (["+model.kwargs.num_classes=5"], ["single_dense has 5 classes and MNIST 10; set model.kwargs.num_classes=10"]),
        (["+trainer.gradient_clip_algorithm=foo"], ["Lightning: `gradient_clip_algorithm` foo is invalid"]),
    ],
)
def test_configuration_mistakes(run_cli, overrides, expected):
    if overrides[0].startswith("+model"):
        overrides = ["model=single_dense", *overrides]
    assert_one_line(*run_cli(*overrides), *expected)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["seed=abc"], ["seed must be a whole number from 0 to 4294967295, got 'abc'"]),
        (["seed=1.5"], ["seed must be a whole number from 0 to 4294967295, got 1.5"]),
        (["seed=-1"], ["seed must be a whole number from 0 to 4294967295, got -1"]),
        ([f"seed={2**40}"], [f"seed must be a whole number from 0 to 4294967295, got {2**40}"]),
        (["optimizer.lr=inf"], ["optimizer.lr must be a finite number above 0, got inf"]),
        (["optimizer.lr=nan"], ["optimizer.lr must be a finite number above 0, got nan"]),
        (["optimizer.weight_decay=-0.1"], ["optimizer.weight_decay must be a finite number of at least 0, got -0.1"]),
        (["label_smoothing=1.0"], ["label_smoothing must be below 1, got 1.0"]),
        (["label_smoothing=-0.1"], ["label_smoothing must be a finite number of at least 0, got -0.1"]),
        (
            ["label_smoothing=0.1", "loss=normalized_sigmoid"],
            ["label_smoothing smooths cross_entropy's targets, and loss=normalized_sigmoid; drop one of the two"],
        ),
        (
            ["+trainer.callbacks=[]"],
            [
                "trainer.callbacks would be ignored: callbacks come from the callbacks group",
                "+callbacks.NAME._target_=CLASS",
            ],
        ),
        (["+trainer.logger=false"], ["trainer.logger would be ignored: loggers come from the logger group", "~logger"]),
        (["+trainer.plugins=[]"], ["trainer.plugins would be ignored"]),
        (
            ["data.data_dir=/nonexistent/x", "data.download=false"],
            ["MNIST files not found (download is off)", "/nonexistent/x/MNIST/raw"],
        ),
    ],
)
def test_mistakes_found_before_anything_is_written(run_cli, tmp_path, overrides, expected):
    assert_one_line(*run_cli(*overrides), *expected)
    assert not (tmp_path / "run").exists()  # no run folder: no .hydra/, train.log or config.yaml


def test_a_search_without_optuna_names_the_extra(run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # (import optuna fails)
    assert_one_line(*run_cli("hparams_search=mlp_optuna"), 'hparams_search needs Optuna: pip install -e ".[hparams]"')


def test_missing_data_folder_while_offline(run_cli, tmp_path, monkeypatch):
    # offline for certain: torchvision's download goes to a port that nothing listens on
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    code, stderr = run_cli(f"data.data_dir={tmp_path / 'new' / 'data'}", "data.download=true")
    assert_one_line(code, stderr, "MNIST files not found (download failed", "DIGITS_ZOO_DATA_DIR")
    assert not (tmp_path / "new").exists()  # the folders made for the download are gone with it


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: b[: len(b) // 2], "truncated or corrupt"),
        (lambda b: b"\x00\x00\x07\x09" + b[4:], "truncated or corrupt"),
    ],
    ids=["truncated", "wrong magic"],
)
def test_damaged_data_file(run_cli, tmp_path, damage, expected):
    root = write_dataset(tmp_path / "data", n_train=300, n_test=100)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    assert_one_line(*run_cli(f"data.data_dir={root}", "data.val_size=10"), str(path), expected)


def test_checkpoint_missing(run_cli, tmp_path):
    code, stderr = run_cli("model=single_dense", f"model.pretrained={tmp_path / 'nope.ckpt'}")
    assert_one_line(code, stderr, "nope.ckpt: no such checkpoint file or run folder")


def test_checkpoint_truncated(run_cli, checkpoint, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    data = open(checkpoint[1], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    code, stderr = run_cli("model=single_dense", f"model.pretrained={truncated}")
    assert_one_line(code, stderr, "truncated.ckpt: damaged or not a weights file")


def test_checkpoint_of_another_model(run_cli, checkpoint):
    code, stderr = run_cli("model=flatten_mlp", f"model.pretrained={checkpoint[0]}")
    assert_one_line(code, stderr, "holds single_dense weights, not flatten_mlp; choose model=single_dense")


def test_checkpoint_for_another_number_of_classes(run_cli, checkpoint, tmp_path, tiny_data):
    saved = torch.load(checkpoint[1], weights_only=True)
    for key in ("model.head.weight", "model.head.bias"):
        saved["state_dict"][key] = saved["state_dict"][key][:5]
    five_classes = tmp_path / "five.ckpt"
    torch.save(saved, five_classes)
    code, stderr = run_cli("model=single_dense", f"model.pretrained={five_classes}")
    assert_one_line(code, stderr, "classify 5 classes, single_dense here 10; add model.reset_head=true")
    from digits_zoo.training.run import train  # ... and what the message suggests works

    cfg = compose_tiny_run(
        tiny_data,
        tmp_path / "fresh_head",
        "model=single_dense",
        f"model.pretrained={five_classes}",
        "model.reset_head=true",
        "trainer.max_epochs=1",
    )
    assert train(cfg)["metrics"]["test/acc"] > 0.5


def test_unwritable_output_folder(run_cli, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, stderr = run_cli(f"hydra.run.dir={blocker / 'run'}")
    assert_one_line(code, stderr, f"cannot use {blocker / 'run'}", "hydra.run.dir=DIR")
    assert blocker.read_text() == "not a folder"


def test_a_finished_run_is_never_overwritten(run_cli, checkpoint):
    run_dir = checkpoint[0]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, stderr = run_cli(f"hydra.run.dir={run_dir}")
    assert_one_line(code, stderr, f"{run_dir} already holds a run", "hydra.run.dir=DIR")
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def _train_process(*args, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.slow  # a real train.py process
def test_a_real_process_prints_one_line_and_exits_1(tiny_data, tmp_path):
    result = _train_process(f"data.data_dir={tiny_data}", "optimizer.lr=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: optimizer.lr must be a finite number above 0, got 0"


@pytest.mark.slow  # a real train.py process
def test_the_debug_switch_shows_the_stack_trace(tmp_path):
    env = {**os.environ, "DIGITS_ZOO_DEBUG": "1"}
    result = _train_process("trainer.max_epoch=3", f"hydra.run.dir={tmp_path / 'run'}", env=env)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr and "max_epoch" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so trainer=gpu is valid here")
def test_trainer_gpu_without_a_gpu(run_cli):
    assert_one_line(*run_cli("trainer=gpu"), "trainer.accelerator=gpu, but torch sees no CUDA GPU here", "trainer=cpu")


def test_a_setting_lightning_refuses_with_a_value_error_is_one_line(run_cli):
    assert_one_line(
        *run_cli("+trainer.val_check_interval=100000"),
        "error: Lightning: `val_check_interval` (100000) must be less than or equal to the number of the "
        "training batches (32).",
    )


def test_a_value_error_from_our_own_code_keeps_its_stack_trace():
    from digits_zoo.training.messages import user_message

    try:
        raise ValueError("a bug")
    except ValueError as error:
        assert user_message(error) is None


@pytest.mark.slow  # a real train.py process
def test_the_error_line_starts_a_line_of_its_own_after_a_progress_bar(tiny_data, tmp_path):
    # (as in a log: python train.py ... > log 2>&1, a bar asked for); the sanity check's bar has drawn before the error
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"data.data_dir={tiny_data}",
            "data.val_size=200",
            "callbacks.progress_bar._target_=digits_zoo.training.callbacks.BatchProgressBar",
            "+trainer.val_check_interval=100000",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Sanity Checking" in result.stdout
    assert "\nerror: Lightning: `val_check_interval`" in result.stdout


class OutOfMemory(L.Callback):
    """Runs out of memory in the first batch of epoch `epoch`: a real allocation the CPU cannot give
    (`where="cpu"`), or torch's OutOfMemoryError as a GPU raises it (there may be no GPU here)."""

    def __init__(self, where: str, epoch: int = 0):
        self.where, self.epoch = where, epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch < self.epoch:
            return
        if self.where == "cpu":
            torch.empty(2**50, dtype=torch.uint8)  # a petabyte
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of "
            "79.25 GiB of which 3.12 GiB is free. Including non-PyTorch memory, ..."
        )


@pytest.mark.slow  # a real train.py process
@pytest.mark.parametrize(
    "where, epoch, expected",
    [
        (
            "gpu",
            0,
            "error: out of GPU memory (it asked for 20.00 GiB more); a smaller data.batch_size or "
            "data.eval_batch_size needs less, and no checkpoints/last.ckpt was written, so there is nothing to "
            "resume: start the run again",
        ),
        (
            "cpu",
            1,
            "error: out of CPU memory (it asked for 1.1 PB more); checkpoints/last.ckpt holds epoch 1 of 2; "
            "free memory, then the run goes on from there with: python train.py resume=run; or start a new run "
            "with a smaller data.batch_size or data.eval_batch_size",
        ),
    ],
)
def test_out_of_memory_says_what_ran_out_and_how_to_go_on(tiny_data, tmp_path, where, epoch, expected):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "train.py"),
            f"data.data_dir={tiny_data}",
            "data.val_size=200",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "trainer.log_every_n_steps=1",
            "hydra.run.dir=run",
            "+callbacks.oom._target_=tests.test_errors.OutOfMemory",
            f"+callbacks.oom.where={where}",
            f"+callbacks.oom.epoch={epoch}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and result.stderr.strip() == expected, result.stderr
