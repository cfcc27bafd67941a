"""The training step path is ready for a GPU: batches arrive on the module's device, and the step
reads no values back to the host (which on a GPU would wait for the device on every step)."""

import traceback

import lightning as L
import pytest
import torch
from torch.overrides import TorchFunctionMode

from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.training.callbacks import BatchProgressBar, RichBatchProgressBar
from digits_zoo.training.module import DigitClassifier
from digits_zoo.training.run import train

HOST_READS = {
    torch.Tensor.item,
    torch.Tensor.tolist,
    torch.Tensor.numpy,
    torch.Tensor.cpu,
    torch.Tensor.__bool__,
    torch.Tensor.__int__,
    torch.Tensor.__float__,
    torch.Tensor.nonzero,
}


class HostReads(TorchFunctionMode):
    """Records calls that copy tensor values to the host, except inside torch's optimisers (Adam
    keeps its step counter on the CPU on every device and reads it there)."""

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in HOST_READS and not any("/torch/optim/" in frame.filename for frame in traceback.extract_stack()):
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


class Watched(DigitClassifier):
    """Checks every training step: where its batches live, and what it reads back."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads, self.devices = [], set()

    def training_step(self, batch, batch_idx):
        self.devices |= {tensor.device for pair in batch for tensor in pair}
        sync_debug = torch.cuda.is_available() and self.device.type == "cuda"
        if sync_debug:
            torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
        try:
            with HostReads() as watch:
                return super().training_step(batch, batch_idx)
        finally:
            self.reads += watch.reads
            if sync_debug:
                torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize(
    "accelerator",
    [
        "cpu",
        pytest.param("gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
    ],
)
def test_training_steps_get_batches_on_their_device_and_read_nothing_back(tiny_data, tmp_path, accelerator):
    module = Watched(model="flatten_mlp")
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[BatchProgressBar()],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=MNISTDataModule(tiny_data, val_size=200, steps_per_execution=4, download=False))
    assert module.devices == {module.device}
    assert module.reads == []
    assert trainer.global_step == 32


def test_bf16_mixed_precision_trains(make_cfg):
    output = train(make_cfg("trainer.precision=bf16-mixed", "trainer.max_epochs=3"))
    assert output["module"]._direct_steps  # autocast needs no gradient scaler: same fast path
    assert output["metrics"]["test/acc"] > 0.9


@pytest.mark.slow
def test_compiled_forward_keeps_plain_checkpoint_keys(make_cfg):
    output = train(make_cfg("model=single_dense", "model.compile=true", "trainer.max_epochs=1"))
    keys = torch.load(output["metrics"]["best_checkpoint"], weights_only=True)["state_dict"]
    assert set(keys) == {"model.head.weight", "model.head.bias"}
    assert output["metrics"]["test/acc"] > 0.5


@pytest.mark.parametrize("bar_class", [BatchProgressBar, RichBatchProgressBar])
def test_progress_bars_count_batches_not_lightning_steps(tiny_data, tmp_path, bar_class):
    seen = []

    class Look(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if isinstance(bar, BatchProgressBar):
                seen.append((bar.train_progress_bar.n, bar.train_progress_bar.total))
            else:
                task = bar.progress.tasks[bar.train_progress_bar_id]
                seen.append((task.completed, task.total))

    bar = bar_class()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar, Look()],
        default_root_dir=tmp_path,
    )
    trainer.fit(
        DigitClassifier(model="single_dense"),
        datamodule=MNISTDataModule(tiny_data, val_size=200, steps_per_execution=5, download=False),
    )
    assert seen == [(32, 32), (32, 32)]  # 1,000 images in batches of 32, in 7 Lightning steps


def test_channels_last_trains_and_its_checkpoint_loads(make_cfg):
    output = train(make_cfg("model=vgg_bn", "model.kwargs.width=4", "model.channels_last=true", "trainer.max_epochs=1"))
    module = output["module"]
    assert module.model.features[3].weight.is_contiguous(memory_format=torch.channels_last)
    restored = DigitClassifier.load_from_checkpoint(output["metrics"]["best_checkpoint"], map_location="cpu")
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(restored.eval()(x), module.cpu().eval()(x))
