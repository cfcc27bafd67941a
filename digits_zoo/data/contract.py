"""What `train()` and `eval.py` need from a data module (`DataModule`, checked by `check_data_module`), and
the record of its data that every checkpoint holds under the project's own key (`RECORD_KEY`, `data_record`),
whatever the data module's class is called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import lightning as L

from digits_zoo.errors import ConfigError

if TYPE_CHECKING:
    import torch

# torchvision's datasets that share MNIST's files and loading (subclasses of MNIST without options): a
# checkpoint records one by name, and predict, eval.py and export read it back by that name
DATASETS = ("MNIST", "FashionMNIST", "KMNIST")
RECORD_KEY = "digits_zoo/data"  # the checkpoint's record of its data: {"dataset": ..., "normalization": ...}
LIGHTNING_KEY = "MNISTDataModule"  # where Lightning kept that record (the class's name) in earlier checkpoints


@runtime_checkable
class DataModule(Protocol):
    """What `train()` and `eval.py` use of a data module, besides the hooks and loaders of the
    `LightningDataModule` it must be (yielding `(images, labels)` batches of (N, 1, 28, 28) floats)."""

    num_classes: int
    # the torchvision class of its data, one of DATASETS: its __name__ is the dataset's, its `classes` the class names
    dataset_cls: type
    has_validation: bool  # whether it holds out a validation split (else runs rank no "best" epoch)
    # the (mean, std) its pixels / 255 were standardised with, once known (after setup), else None
    normalization: tuple[float, float] | None
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]  # after setup: "fit", "val", "test" -> (images, labels)

    def check_files(self) -> bool:
        """Whether its files are there; a DataError that says where to put them where they cannot be fetched."""


MEMBERS = sorted({*DataModule.__annotations__, *(name for name in vars(DataModule) if not name.startswith("_"))})


def check_data_module(datamodule: object) -> None:
    """A ConfigError naming what `datamodule` lacks of the contract (before a run writes anything)."""
    name = type(datamodule).__qualname__
    if not isinstance(datamodule, L.LightningDataModule):
        raise ConfigError(
            f'data._target_ builds {name}, which is not a LightningDataModule; see "Add a dataset" in '
            "docs/contributing.md"
        )
    missing = [member for member in MEMBERS if not hasattr(datamodule, member)]
    if missing:
        raise ConfigError(
            f"data module {name} lacks {', '.join(missing)}, which train.py and eval.py use; see "
            '"Add a dataset" in docs/contributing.md'
        )
    dataset = getattr(datamodule.dataset_cls, "__name__", datamodule.dataset_cls)
    if dataset not in DATASETS:
        raise ConfigError(
            f"data module {name} reads {dataset}, which predict, eval.py and export cannot read back; "
            f"its dataset_cls must be one of torchvision's {', '.join(DATASETS)}"
        )


def data_record(datamodule: DataModule) -> dict:
    """What a checkpoint keeps of its data (under RECORD_KEY): the dataset, and the (mean, std) its inputs
    were standardised with (predict, eval.py and export prepare inputs with them)."""
    normalization = datamodule.normalization
    return {"dataset": datamodule.dataset_cls.__name__, "normalization": list(normalization) if normalization else None}
