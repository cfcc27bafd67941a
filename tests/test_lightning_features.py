"""The Lightning features a user reaches for, each run through `train(cfg)` on the tiny data and
checked for the effect Lightning documents, not just for not crashing; and the two training loops
(grouped steps, Lightning's own) checked to train step for step the same.

The tiny data: 1,000 training images (200 held out), batch 32, so 32 optimiser steps per epoch.
"""

from __future__ import annotations

import csv
import datetime
import math

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.tuner import Tuner

from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.errors import ConfigError
from digits_zoo.training.loop import lightning_loop_reasons
from digits_zoo.training.module import DigitClassifier, DivergedError
from digits_zoo.training.run import train

STEPS_PER_EPOCH = 32
HERE = "tests.test_lightning_features"


def callback(key: str, target: str, **kwargs) -> list[str]:
    """Overrides that add the callback `target` (a class path) as callbacks.<key>."""
    return [f"+callbacks.{key}._target_={target}", *(f"+callbacks.{key}.{k}={v}" for k, v in kwargs.items())]


def rows(run_dir, column: str) -> list[dict]:
    """The rows of the run's CSV log that hold `column`."""
    with open(run_dir / "csv" / "metrics.csv") as file:
        return [row for row in csv.DictReader(file) if row.get(column)]


def weights(module: DigitClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def checkpoint_weights(path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}


class PerBatchListener(L.Callback):
    """Does nothing, but listens to every batch: the run takes Lightning's own loop."""

    def on_train_batch_end(self, *args) -> None:
        pass


class EpochStartWeights(L.Callback):
    """The network's weights at the start of every training epoch (an epoch-level hook)."""

    def __init__(self):
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.seen.append(weights(pl_module))


class StepWeights(L.Callback):
    """The network's weights after every optimiser step."""

    def __init__(self):
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.seen.append(weights(pl_module))


class OptimizerSees(L.Callback):
    """The gradients the optimiser stepped with, after Lightning's clipping (torch's step post-hook:
    the gradients are only cleared before the next backward), hooked in from a non-batch hook."""

    def __init__(self):
        self.norms: list[float] = []
        self.largest: list[float] = []

    def on_train_start(self, trainer, pl_module) -> None:
        def look(optimizer, args, kwargs):
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
            self.largest.append(max(g.abs().max().item() for g in grads))

        trainer.optimizers[0].register_step_post_hook(look)


class EpochFlags(L.Callback):
    """torch's global flags as training sees them."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.deterministic = torch.are_deterministic_algorithms_enabled()


class PoisonAtStart(L.Callback):
    """Makes one weight NaN when training starts: every gradient of it is NaN."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.model.head.weight[0, 0] = float("nan")


def find(trainer: L.Trainer, kind: type):
    (found,) = [c for c in trainer.callbacks if isinstance(c, kind)]
    return found


# --- the two loops ------------------------------------------------------------------------------


@pytest.mark.slow
def test_grouped_steps_train_step_for_step_like_lightnings_own_loop(make_cfg, tmp_path):
    common = ("trainer.log_every_n_steps=5", "optimizer.scheduler=onecycle", "logger=[csv,tensorboard]")
    grouped = train(make_cfg(*common, "data.steps_per_execution=16", run="grouped"))
    lightning = train(
        make_cfg(
            *common, "data.steps_per_execution=16", *callback("listen", f"{HERE}.PerBatchListener"), run="lightning"
        )
    )
    assert grouped["module"].takes_groups and not lightning["module"].takes_groups
    assert grouped["trainer"].global_step == lightning["trainer"].global_step == 2 * STEPS_PER_EPOCH
    for name, value in weights(grouped["module"]).items():
        assert torch.equal(value, weights(lightning["module"])[name]), name
    assert grouped["metrics"]["test/loss"] == lightning["metrics"]["test/loss"]
    # the same rows in the loggers: per-step losses at the same steps, epoch means on the same axis
    # (the training epoch's mean is summed a group at a time in one loop: equal to float rounding)
    for column in ("train/loss_step", "train/loss", "train/acc", "val/loss", "val/acc"):
        ours, theirs = rows(tmp_path / "grouped", column), rows(tmp_path / "lightning", column)
        assert [(r["step"], r["epoch"]) for r in ours] == [(r["step"], r["epoch"]) for r in theirs] != []
        assert [float(r[column]) for r in ours] == pytest.approx([float(r[column]) for r in theirs], rel=1e-6, abs=0)


def test_log_every_n_steps_logs_per_step_training_loss_to_csv_and_tensorboard(make_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    output = train(make_cfg("trainer.log_every_n_steps=5", "logger=[csv,tensorboard]"))
    assert output["module"].takes_groups  # the fast loop logs them as Lightning's own would
    expected = [step for step in range(2 * STEPS_PER_EPOCH) if (step + 1) % 5 == 0]
    logged = rows(tmp_path / "run", "train/loss_step")
    assert [int(r["step"]) for r in logged] == expected
    assert [int(r["epoch"]) for r in logged] == [step // STEPS_PER_EPOCH for step in expected]
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    scalars = events.Scalars("train/loss_step")
    assert [s.step for s in scalars] == expected
    assert [s.value for s in scalars] == pytest.approx([float(r["train/loss_step"]) for r in logged])
    # the first logged loss is the loss of the 5th batch, from the weights after 4 steps: near log(10)
    assert 0.5 < float(logged[0]["train/loss_step"]) < 3.0


def test_the_choice_of_loop_is_said_in_one_line(make_cfg, caplog):
    with caplog.at_level("INFO"):
        train(make_cfg("+trainer.gradient_clip_val=1.0"))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Training loop")]
    assert "Lightning's own" in line and "trainer.gradient_clip_val=1.0" in line
    assert "data.steps_per_execution=16 is not used" in line


# --- each feature -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm, bound", [("norm", "norms"), ("value", "largest")])
def test_gradient_clipping_bounds_the_gradient_the_optimiser_sees(make_cfg, algorithm, bound):
    sees = callback("sees", f"{HERE}.OptimizerSees")
    free = train(make_cfg(*sees, "trainer.max_epochs=1", run="free"))
    clipped = train(
        make_cfg(
            *sees,
            "trainer.max_epochs=1",
            "+trainer.gradient_clip_val=0.01",
            f"+trainer.gradient_clip_algorithm={algorithm}",
        )
    )
    unclipped, seen = (
        getattr(find(free["trainer"], OptimizerSees), bound),
        getattr(find(clipped["trainer"], OptimizerSees), bound),
    )
    assert len(seen) == STEPS_PER_EPOCH and max(unclipped) > 0.1  # so the clipping had work to do
    assert max(seen) <= 0.01 * (1 + 1e-5)


def test_accumulating_k_batches_equals_k_times_larger_batches(make_cfg):
    # 992 images: 31 batches of 32, or 62 of 16 accumulated in pairs, over the same order of images
    common = ("model=two_layer_mlp", "data.val_size=0", "data.train_size=992")
    big = train(make_cfg(*common, "data.batch_size=32", run="big"))
    accumulated = train(make_cfg(*common, "data.batch_size=16", "+trainer.accumulate_grad_batches=2"))
    assert big["trainer"].global_step == accumulated["trainer"].global_step == 2 * 31
    for name, value in weights(big["module"]).items():
        torch.testing.assert_close(weights(accumulated["module"])[name], value, rtol=1e-4, atol=1e-5)


def test_early_stopping_on_val_acc_stops_training(make_cfg):
    # no epoch can improve val/acc by 1.0: training stops after the first epoch that does not
    output = train(
        make_cfg(
            "callbacks=early_stopping",
            "callbacks.early_stopping.patience=1",
            "callbacks.early_stopping.min_delta=1.0",
            "trainer.max_epochs=5",
        )
    )
    assert output["trainer"].current_epoch == output["metrics"]["epochs"] == 2  # of 5
    assert output["module"].takes_groups  # an epoch-level callback keeps the fast loop


def test_learning_rate_monitor_logs_the_onecycle_rates_at_the_logged_steps(make_cfg, tmp_path):
    output = train(
        make_cfg(
            "callbacks=lr_monitor", "optimizer.scheduler=onecycle", "optimizer.lr=0.003", "trainer.log_every_n_steps=5"
        )
    )
    total = 2 * STEPS_PER_EPOCH
    # the same schedule, stepped independently: the rate in force for each step
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.003)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.003, total_steps=total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        onecycle.step()
    logged = rows(tmp_path / "run", "lr-Adam")
    steps = [step for step in range(total) if (step + 1) % 5 == 0]  # every log_every_n_steps, as the losses
    assert (
        [int(r["step"]) for r in logged] == steps == [int(r["step"]) for r in rows(tmp_path / "run", "train/loss_step")]
    )
    assert [float(r["lr-Adam"]) for r in logged] == pytest.approx([rates[s] for s in steps], rel=1e-6)
    # the epoch means sit on the same axis, at the epochs' last steps
    assert [int(r["step"]) for r in rows(tmp_path / "run", "val/acc")] == [31, 63]  # (0-based) last steps
    assert output["trainer"].global_step == total


@pytest.mark.parametrize("model", ["flatten_mlp", "mlp_bn_dropout"])
def test_stochastic_weight_averaging_tests_the_average_of_its_epochs(make_cfg, model):
    # swa_epoch_start=2 (counted from 1) of 3 epochs: Lightning averages the weights at the start of
    # the 2nd and 3rd epochs (and, with batch-norm, then spends one more epoch on its statistics only)
    output = train(
        make_cfg(
            f"model={model}",
            "trainer.max_epochs=3",
            *callback("swa", "lightning.pytorch.callbacks.StochasticWeightAveraging", swa_lrs=0.01, swa_epoch_start=2),
            *callback("starts", f"{HERE}.EpochStartWeights"),
        )
    )
    seen = find(output["trainer"], EpochStartWeights).seen
    averaged = checkpoint_weights(output["metrics"]["best_checkpoint"])
    assert output["metrics"]["best_checkpoint"].endswith("averaged.ckpt")
    for name, value in averaged.items():
        if "running_" in name or "num_batches" in name:  # batch-norm statistics: recomputed
            continue
        torch.testing.assert_close(value, (seen[1][name] + seen[2][name]) / 2, rtol=1e-5, atol=1e-6)
    # with batch-norm, Lightning's extra epoch recomputes the statistics without a training step
    assert output["metrics"]["epochs"] == (4 if model == "mlp_bn_dropout" else 3)


def test_ema_weight_averaging_matches_an_independent_average(make_cfg, tmp_path):
    output = train(
        make_cfg(
            "callbacks=ema",
            "callbacks.ema.decay=0.5",
            "trainer.max_epochs=1",
            *callback("steps", f"{HERE}.StepWeights"),
        )
    )
    seen = find(output["trainer"], StepWeights).seen
    assert len(seen) == STEPS_PER_EPOCH
    average = {name: value.clone() for name, value in seen[0].items()}  # the first update copies
    for step in seen[1:]:
        for name in average:
            average[name] = 0.5 * average[name] + 0.5 * step[name]
    saved = checkpoint_weights(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for name, value in average.items():
        torch.testing.assert_close(saved[name], value, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(saved[name], seen[-1][name])  # an average, not the last weights
    # and the test read those averaged weights (Lightning's callback, left in, would load the raw ones)
    tested = output["module"].model.state_dict()
    for name, value in checkpoint_weights(output["metrics"]["best_checkpoint"]).items():
        torch.testing.assert_close(tested[name], value)


def test_lr_find_suggests_a_rate_inside_the_searched_range(make_cfg, tmp_path):
    output = train(make_cfg("lr_find=true", "lr_find_range.num_training=60"))
    found = output["lr_find"]
    assert found["points"] == 60 and 1e-6 <= found["suggestion"] <= 1.0
    rates = list(csv.DictReader(open(tmp_path / "run" / "lr_find.csv")))
    assert len(rates) == 60 and float(rates[0]["lr"]) < float(rates[-1]["lr"])
    assert (tmp_path / "run" / "lr_find.png").stat().st_size > 10_000
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained or saved


def test_lightnings_tuner_finds_a_rate_for_the_module_directly(tiny_data, tmp_path):
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    datamodule = MNISTDataModule(tiny_data, download=False, val_size=200, steps_per_execution=16)
    finder = Tuner(trainer).lr_find(DigitClassifier("flatten_mlp"), datamodule=datamodule, num_training=60)
    # (it may stop a few steps early, where the highest rates make the loss diverge)
    assert len(finder.results["lr"]) >= 40 and 1e-8 <= finder.suggestion() <= 1.0


def test_checkpoints_every_n_train_steps_land_on_those_steps(make_cfg, tmp_path):
    train(
        make_cfg(
            *callback(
                "every",
                "lightning.pytorch.callbacks.ModelCheckpoint",
                every_n_train_steps=10,
                save_top_k=-1,
                dirpath=str(tmp_path / "every"),
                filename="'step{step}'",
            )
        )
    )
    saved = sorted(torch.load(p, weights_only=True)["global_step"] for p in (tmp_path / "every").glob("*.ckpt"))
    assert saved == [10, 20, 30, 40, 50, 60]


def test_checkpoints_on_a_train_time_interval_fire_within_an_epoch(make_cfg, tmp_path):
    train(
        make_cfg(
            "trainer.max_epochs=1",
            *callback(
                "timed",
                "lightning.pytorch.callbacks.ModelCheckpoint",
                save_top_k=-1,
                dirpath=str(tmp_path / "timed"),
                filename="'step{step}'",
            ),
            "+callbacks.timed.train_time_interval._target_=datetime.timedelta",
            "+callbacks.timed.train_time_interval.microseconds=1",
        )
    )
    saved = sorted(torch.load(p, weights_only=True)["global_step"] for p in (tmp_path / "timed").glob("*.ckpt"))
    assert len(saved) >= STEPS_PER_EPOCH // 2 and saved[0] < STEPS_PER_EPOCH  # saves inside the epoch


@pytest.mark.filterwarnings("ignore:`ModelCheckpoint.monitor='val/acc'.` could not find")  # stopped before validating
def test_max_steps_stops_at_exactly_that_step(make_cfg):
    output = train(make_cfg("+trainer.max_steps=10", "trainer.max_epochs=3"))
    assert output["trainer"].global_step == 10


def test_an_integer_val_check_interval_validates_every_n_batches(make_cfg, tmp_path):
    train(make_cfg("+trainer.val_check_interval=10"))
    validated = [int(r["step"]) for r in rows(tmp_path / "run", "val/acc")]
    assert validated == [9, 19, 29, 41, 51, 61]  # after batches 10, 20, 30 of each epoch (0-based steps)


@pytest.mark.parametrize("limit, per_epoch", [(5, 5), (0.25, 8)])
def test_limit_train_batches_counts_batches(make_cfg, limit, per_epoch):
    output = train(make_cfg(f"+trainer.limit_train_batches={limit}"))
    assert output["trainer"].global_step == 2 * per_epoch


def test_fast_dev_run_runs_one_batch_of_each_and_writes_no_checkpoint(make_cfg, tmp_path):
    output = train(make_cfg("+trainer.fast_dev_run=true"))
    assert output["trainer"].global_step == 1 and output["metrics"]["epochs"] == 1
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))
    assert output["metrics"]["best_checkpoint"] is None


def test_the_simple_profiler_reports_every_batch_and_optimiser_step(make_cfg, tmp_path):
    output = train(make_cfg("+trainer.profiler=simple"))
    durations = output["trainer"].profiler.recorded_durations
    assert len(durations["run_training_batch"]) == 2 * STEPS_PER_EPOCH
    assert len(durations["[LightningModule]DigitClassifier.optimizer_step"]) == 2 * STEPS_PER_EPOCH


@pytest.mark.filterwarnings("ignore:Error detected in:UserWarning")  # anomaly mode's own report
def test_detect_anomaly_reports_the_operation_that_made_a_nan_gradient(make_cfg):
    poison = callback("poison", f"{HERE}.PoisonAtStart")
    with pytest.raises(RuntimeError, match="returned nan values"):
        train(make_cfg(*poison, "+trainer.detect_anomaly=true"))
    with pytest.raises(DivergedError):  # without it, the run's own check stops it
        train(make_cfg(*poison, run="plain"))


@pytest.fixture
def restore_determinism():
    yield
    torch.use_deterministic_algorithms(False)


def test_deterministic_turns_on_torchs_deterministic_algorithms(make_cfg, restore_determinism):
    first = train(make_cfg("+trainer.deterministic=true", *callback("flags", f"{HERE}.EpochFlags")))
    assert find(first["trainer"], EpochFlags).deterministic
    again = train(make_cfg("+trainer.deterministic=true", run="again"))
    assert first["metrics"]["test/loss"] == again["metrics"]["test/loss"]


# --- the decision and what it relies on ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"gradient_clip_val": 0.5}, "trainer.gradient_clip_val=0.5"),
        ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches=2"),
        ({"max_steps": 5}, "trainer.max_steps"),
        ({"limit_train_batches": 1}, "trainer.limit_train_batches"),  # an int: one batch
        ({"val_check_interval": 0.5}, "trainer.val_check_interval"),
        ({"max_time": "00:00:10:00"}, "trainer.max_time"),
        ({"profiler": "simple"}, "trainer.profiler"),
        ({"callbacks": [ModelCheckpoint(every_n_train_steps=5)]}, "ModelCheckpoint(every_n_train_steps=5)"),
        ({"callbacks": [ModelCheckpoint(train_time_interval=datetime.timedelta(seconds=5))]}, "train_time_interval"),
        ({"callbacks": [L.pytorch.callbacks.LearningRateMonitor()]}, "LearningRateMonitor"),
        ({"callbacks": [L.pytorch.callbacks.StochasticWeightAveraging(swa_lrs=0.1)]}, "StochasticWeightAveraging"),
        ({"callbacks": [L.pytorch.callbacks.EMAWeightAveraging()]}, "EMAWeightAveraging"),
    ],
)
def test_what_needs_lightnings_own_loop_is_recognised(kwargs, reason):
    # also guards the private attributes the decision reads (ModelCheckpoint's step and time settings)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, **kwargs)
    reasons = lightning_loop_reasons(trainer, DigitClassifier("single_dense"), DigitClassifier)
    assert any(reason in r for r in reasons), reasons


def test_the_default_trainer_takes_grouped_steps():
    trainer = L.Trainer(
        logger=False, callbacks=[ModelCheckpoint(monitor="val/acc"), L.pytorch.callbacks.EarlyStopping("val/acc")]
    )
    assert lightning_loop_reasons(trainer, DigitClassifier("single_dense"), DigitClassifier) == []


def test_lightnings_private_step_hooks_still_count_optimiser_steps(make_cfg):
    """Grouped steps call LightningOptimizer._on_before_step/_on_after_step (Lightning 2.6's manual
    loop sets them to start/stop its profiler and count global_step) and advance the epoch loop's
    _batches_that_stepped (the loggers' step). If a Lightning release renames or changes them, this
    fails: update DigitClassifier.training_step before widening the pin."""
    assert {"_on_before_step", "_on_after_step"} <= set(
        vars(LightningOptimizer(torch.optim.SGD([torch.zeros(1)], lr=1)))
    )
    output = train(make_cfg("data.steps_per_execution=16"))
    assert output["module"]._direct_steps
    loop = output["trainer"].fit_loop.epoch_loop
    assert output["trainer"].global_step == loop._batches_that_stepped == 2 * STEPS_PER_EPOCH  # the loggers' axis
    assert loop.batch_progress.total.completed == 2 * math.ceil(STEPS_PER_EPOCH / 16)


@pytest.mark.filterwarnings("ignore:You defined a `validation_step` but have no `val_dataloader`")
def test_a_grouped_loader_under_lightnings_loop_is_refused(tiny_data, tmp_path):
    module = DigitClassifier("single_dense")
    loader = MNISTDataModule(tiny_data, download=False, val_size=200, steps_per_execution=4)
    loader.setup()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[PerBatchListener()],
        default_root_dir=tmp_path,
    )
    from digits_zoo.data.mnist import TensorLoader

    grouped = TensorLoader(*loader.splits["fit"], 32, shuffle_seed=0, steps_per_execution=4)
    with pytest.raises(ConfigError, match="groups of batches"):
        trainer.fit(module, train_dataloaders=grouped)


def test_callback_presets_compose_with_the_default_checkpoints(make_cfg):
    cfg = make_cfg("callbacks=[early_stopping,lr_monitor,ema,model_summary]")
    assert list(cfg.callbacks) == [
        "model_checkpoint",
        "last_checkpoint",
        "progress_bar",
        "early_stopping",
        "lr_monitor",
        "ema",
        "model_summary",
    ]
    output = train(make_cfg("callbacks=model_summary", "trainer.max_epochs=1"))
    from lightning.pytorch.callbacks import ModelSummary

    assert find(output["trainer"], ModelSummary)._max_depth == -1
    assert output["module"].takes_groups  # a summary at the start changes nothing per batch
