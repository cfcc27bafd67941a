import csv
import json
import time
from typing import ClassVar

import lightning as L
import pytest
import torch
from matplotlib.image import imread

from digits_zoo.training.callbacks import BatchProgressBar
from digits_zoo.training.figures import RunFigures
from digits_zoo.training.module import DigitClassifier
from digits_zoo.training.plots import confusion_matrix_figure, mistakes_figure, per_class_accuracy_figure
from digits_zoo.training.run import train


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """One real `train(cfg)` on the tiny data, shared by the tests that inspect its run folder."""
    from tests.conftest import compose_tiny_run

    out = tmp_path_factory.mktemp("run")
    cfg = compose_tiny_run(tiny_data, out, "logger=[csv,tensorboard]")
    return train(cfg), out


def test_results_json_holds_the_test_metrics(run):
    output, out = run
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "flatten_mlp" and results["params"] == 79_510 and results["epochs"] == 2
    assert results["dataset"] == "MNIST"  # what it trained on, so that the leaderboard ranks like with like
    assert results["best_epoch"] in (1, 2)
    assert results["test/acc"] == output["metrics"]["test/acc"] > 0.9  # the synthetic digits are easy
    assert results["test/loss"] > 0 and results["train_seconds"] > 0
    assert results["best_checkpoint"].endswith(".ckpt") and 0 < results["best_val/acc"] <= 1


def test_epochs_are_counted_from_1_in_checkpoint_names_and_the_progress_bar(run, capsys):
    _, out = run
    results = json.loads((out / "results.json").read_text())
    assert results["best_checkpoint"].endswith(f"/best-epoch{results['best_epoch']:02d}.ckpt")
    bar = BatchProgressBar()
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, callbacks=[bar])
    trainer.fit_loop.epoch_progress.current.completed = 1  # the second epoch starts
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer)
    bar.on_train_epoch_start(trainer)
    assert bar.train_progress_bar.desc == "Epoch 2/2: "


def test_plots_name_the_classes_of_a_dataset_that_is_not_digits():
    from torchvision.datasets import MNIST, FashionMNIST

    confusion = torch.eye(10, dtype=torch.long) * 5
    digits = confusion_matrix_figure(confusion, classes=MNIST.classes).axes[0]
    assert (digits.get_xlabel(), digits.get_ylabel()) == ("predicted digit", "true digit")
    assert [t.get_text() for t in digits.get_xticklabels()] == [str(i) for i in range(10)]
    clothes = confusion_matrix_figure(confusion, classes=FashionMNIST.classes).axes[0]
    assert (clothes.get_xlabel(), clothes.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in clothes.get_yticklabels()] == FashionMNIST.classes
    accuracy = per_class_accuracy_figure(confusion, FashionMNIST.classes).axes[0]
    assert accuracy.get_xlabel() == "true class" and accuracy.get_title() == "Test accuracy per class"
    mistakes = mistakes_figure(
        torch.rand(1, 1, 28, 28), torch.tensor([9]), torch.tensor([7]), torch.tensor([0.9]), FashionMNIST.classes
    )
    assert [t.get_text() for t in mistakes.axes[0].texts] == ["Ankle boot → Sneaker, 0.90"]


def test_a_run_on_another_dataset_draws_its_class_names(tmp_path, monkeypatch):
    from tests.conftest import compose_tiny_run
    from tests.idx import write_dataset

    drawn = {}
    monkeypatch.setattr(
        "digits_zoo.training.figures.save_run_plots", lambda *args: drawn.setdefault("classes", args[-1]) and {}
    )
    data = write_dataset(tmp_path / "data", name="FashionMNIST")
    train(compose_tiny_run(data, tmp_path / "run", "data=fashion_mnist", "trainer.max_epochs=1"))
    assert drawn["classes"][9] == "Ankle boot"


def test_run_folder_holds_config_checkpoints_and_per_epoch_metrics(run):
    _, out = run
    assert (out / "config.yaml").is_file() and "${" not in (out / "config.yaml").read_text()
    assert len(list((out / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    # the final epoch, also where val/acc did not improve (Lightning's save_last then writes nothing)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"} <= set(rows[0])
    assert len([r for r in rows if r["train/acc"]]) == 2 and len([r for r in rows if r["val/acc"]]) == 2


@pytest.mark.parametrize(
    "name", ["confusion_matrix", "confusion_matrix_normalized", "per_class_accuracy", "mistakes", "training_curves"]
)
def test_every_plot_is_a_valid_png(run, name):
    _, out = run
    image = imread(out / f"{name}.png")
    assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0


def test_confusion_matrix_is_written_as_csv_and_png(run):
    output, out = run
    rows = list(csv.reader(open(out / "confusion_matrix.csv")))
    assert rows[0] == ["true\\predicted", *map(str, range(10))]
    counts = torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]])
    assert counts.shape == (10, 10) and counts.sum() == 300
    assert counts.diag().sum() / 300 == pytest.approx(output["metrics"]["test/acc"], abs=1e-6)
    assert imread(out / "confusion_matrix.png").shape[:2] == (560, 640)


def test_tensorboard_gets_the_confusion_matrices(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = run
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    assert {
        "val/confusion_matrix",
        "test/confusion_matrix",
        "test/confusion_matrix_normalized",
        "test/per_class_accuracy",
        "test/mistakes",
        "test/training_curves",
    } <= set(events.Tags()["images"])


@pytest.mark.pictures
def test_the_module_only_measures_and_the_run_figures_callback_draws(run, tmp_path):
    output, _ = run
    module, dm = output["module"], output["datamodule"]
    settings = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    L.Trainer(default_root_dir=tmp_path / "plain", **settings).test(module, datamodule=dm, verbose=False)
    assert module.confusion["test"].sum() == 300 and len(module.mistakes[1]) == 20
    assert not (tmp_path / "plain").exists()  # a plain Trainer's test draws nothing
    drawing = L.Trainer(default_root_dir=tmp_path / "drawn", callbacks=[RunFigures()], **settings)
    drawing.test(module, datamodule=dm, verbose=False)
    assert {p.name for p in (tmp_path / "drawn").iterdir()} == {
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "confusion_matrix_normalized.png",
        "per_class_accuracy.png",
        "mistakes.png",
        "training_curves.png",
    }


def test_checkpoint_loads_without_the_config(run):
    output, _ = run
    path = output["metrics"]["best_checkpoint"]
    restored = DigitClassifier.load_from_checkpoint(path, map_location="cpu")
    assert restored.hparams.model == "flatten_mlp"
    x = output["datamodule"].splits["test"][0][:16]
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    original = DigitClassifier(model="flatten_mlp")
    original.load_state_dict(state)
    assert torch.equal(restored(x), original(x))


def test_predict_returns_probabilities_through_the_output_activation(run):
    output, _ = run
    trainer, module, dm = output["trainer"], output["module"], output["datamodule"]
    probabilities = torch.cat(trainer.predict(module, datamodule=dm))
    assert probabilities.shape == (300, 10)
    assert torch.allclose(probabilities, torch.sigmoid(module(dm.splits["test"][0])))


def test_without_validation_the_final_weights_are_tested(make_cfg, tmp_path):
    output = train(make_cfg("experiment=seed_parity", "trainer.max_epochs=1", "model=single_dense", "data.val_size=0"))
    run = tmp_path / "run"
    assert output["metrics"]["best_checkpoint"] is None
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]
    final = DigitClassifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert torch.equal(final.model.head.weight, output["module"].model.head.weight)
    assert len(output["datamodule"].splits["fit"][1]) == 1200


def test_a_search_trial_never_reads_the_test_set(make_cfg, tmp_path):
    output = train(make_cfg("+optimized_metric=val/acc", "trainer.max_epochs=1"))  # as hparams_search sets it
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test/acc"] is None and results["test/loss"] is None and 0 < results["best_val/acc"] <= 1
    assert output["trainer"].state.fn == "fit"  # trainer.test never ran
    assert not (tmp_path / "run" / "confusion_matrix.csv").exists()


def test_normalized_sigmoid_loss_trains_too(make_cfg):
    output = train(make_cfg("loss=normalized_sigmoid", "trainer.max_epochs=2", "model=two_layer_mlp"))
    assert output["metrics"]["test/acc"] > 0.9


class BackwardCounter(L.Callback):
    """Listens to a per-step hook, so the optimiser steps must go through Lightning's dispatch."""

    calls = 0

    def on_after_backward(self, trainer, pl_module) -> None:
        self.calls += 1


def test_direct_grouped_steps_train_step_for_step_like_lightnings_own(make_cfg):
    lightning_path = train(
        make_cfg(
            "data.steps_per_execution=1",
            "model=two_layer_mlp",
            "+callbacks.counter._target_=tests.test_training.BackwardCounter",
        )
    )
    direct = train(make_cfg("data.steps_per_execution=6", "model=two_layer_mlp", run="grouped"))
    assert not lightning_path["module"]._direct_steps and direct["module"]._direct_steps
    (counter,) = [c for c in lightning_path["trainer"].callbacks if isinstance(c, BackwardCounter)]
    assert counter.calls == lightning_path["trainer"].global_step == direct["trainer"].global_step == 2 * 32
    for p1, p2 in zip(lightning_path["module"].parameters(), direct["module"].parameters()):
        assert torch.equal(p1, p2)
    for key in ("test/acc", "test/loss"):
        assert lightning_path["metrics"][key] == direct["metrics"][key]


def test_label_smoothing_trains_both_loops_alike(make_cfg):
    common = ("label_smoothing=0.1", "model=two_layer_mlp", "trainer.max_epochs=1")
    counter = "+callbacks.counter._target_=tests.test_training.BackwardCounter"  # (Lightning's own loop)
    lightning_path = train(make_cfg(*common, "data.steps_per_execution=1", counter))
    direct = train(make_cfg(*common, "data.steps_per_execution=6", run="grouped"))
    plain = train(make_cfg(*common[1:], "data.steps_per_execution=6", run="plain"))
    assert not lightning_path["module"]._direct_steps and direct["module"]._direct_steps
    smoothed, grouped, unsmoothed = (list(run["module"].parameters()) for run in (lightning_path, direct, plain))
    assert all(torch.equal(p1, p2) for p1, p2 in zip(smoothed, grouped))
    assert not all(torch.equal(p1, p2) for p1, p2 in zip(grouped, unsmoothed))


def test_onecycle_schedule_steps_once_per_optimiser_step(make_cfg, tmp_path):
    output = train(make_cfg("optimizer.scheduler=onecycle", "data.steps_per_execution=5", "trainer.max_epochs=2"))
    (scheduler,) = output["trainer"].lr_scheduler_configs
    assert scheduler.scheduler.last_epoch == output["trainer"].global_step == 2 * 32
    assert scheduler.scheduler.get_last_lr()[0] < 1e-5  # the cycle ran to its end


class Clock(L.Callback):
    """When the training started and ended (this run's callbacks run just before the Timer's hooks)."""

    times: ClassVar[dict] = {}

    def on_train_start(self, trainer, pl_module):
        self.times["start"] = time.monotonic()

    def on_train_end(self, trainer, pl_module):
        self.times["end"] = time.monotonic()


def test_training_seconds_count_the_training_once_when_a_best_checkpoint_is_tested(make_cfg):
    # testing best-epochNN.ckpt restores the Timer's state, the training time at that epoch, as an
    # offset: read after the test, the training would count that much twice
    results = train(make_cfg("+callbacks.clock._target_=tests.test_training.Clock"))["metrics"]
    assert results["best_checkpoint"]
    assert results["train_seconds"] == pytest.approx(Clock.times["end"] - Clock.times["start"], abs=0.01)
