"""`MNISTDataModule`: torchvision's MNIST family, read once and served from in-memory tensors."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import lightning as L
import torch
import torchvision
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

from digits_zoo.data.augment import augment_batch, check_settings
from digits_zoo.data.contract import DATASETS
from digits_zoo.errors import ConfigError, DataError, check_count, one_line

DATA_DIR_ENV = "DIGITS_ZOO_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def batches_per_epoch(trainer: L.Trainer) -> int | float:
    """Batches (optimiser steps) in one training epoch. Lightning counts its own steps, which with
    TensorLoader's steps_per_execution are groups of batches, the last one maybe shorter."""
    loader = trainer.train_dataloader
    per_step = getattr(loader, "steps_per_execution", 1)
    return min(trainer.num_training_batches * per_step, getattr(loader, "num_batches", float("inf")))


class EpochShuffle:
    """The order of each epoch is a function of (seed, epoch) alone, so a resumed epoch replays
    the same batches. Lightning calls `set_epoch` on a loader's `sampler` before every epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randperm(self.size, generator=generator)


def padded(order: torch.Tensor, multiple: int) -> torch.Tensor:
    """`order` continued from its own start up to a multiple of `multiple`, as torch's
    DistributedSampler pads (so fewer than `multiple` images appear twice)."""
    total = math.ceil(len(order) / multiple) * multiple
    return order.repeat(math.ceil(total / len(order)))[:total]


class TensorLoader:
    """Whole batches sliced from tensors that already live on the training device.

    Per-image PIL conversion in torchvision's `__getitem__` costs more than the small models'
    own work, so batches are cut from the stacked tensors instead; no worker processes needed.
    The last, smaller batch is kept (no `drop_last`). With `steps_per_execution` k > 1 it yields
    lists of k consecutive (x, y) batches, the same batches in the same order, so that one
    Lightning step can run k optimiser steps (Lightning's own cost per step is larger than a
    small model's).

    With several processes (DDP: process `rank` of `world_size`) Lightning inserts no distributed
    sampler here (this is not a DataLoader), so the loader deals the shares itself, as torch's
    DistributedSampler does: the epoch's order is cut into rounds of world_size x batch_size
    images and each process takes every world_size-th image of each round, from its rank on. The
    processes' k-th batches together are thus one process's k-th batch of world_size x batch_size
    images. For training the order is first padded with its own start to a multiple of
    world_size, so that every process takes the same number of optimiser steps (DDP waits for all
    of them at each); evaluation is never padded, so every image is counted exactly once.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle_seed: int | None = None,
        steps_per_execution: int = 1,
        augment: dict | None = None,
        rank: int = 0,
        world_size: int = 1,
        background: float = 0.0,
        white: float = 1.0,
    ):
        self.images, self.labels, self.batch_size = images, labels, batch_size
        # for shuffled (training) batches: checked data.augment settings, and the value of a blank pixel
        self.augment, self.background, self.white = augment, background, white
        self.steps_per_execution = steps_per_execution
        self.rank, self.world_size = rank, world_size
        # DataLoader-like attributes that Lightning inspects (it calls `sampler.set_epoch`)
        self.sampler = None if shuffle_seed is None else EpochShuffle(len(labels), shuffle_seed)
        self.batch_sampler = None
        # this process's batches: one for each round of dealing that has an image left for it
        per_epoch = len(labels) if self.sampler is None else math.ceil(len(labels) / world_size) * world_size
        rounds, rest = divmod(per_epoch, batch_size * world_size)
        self.num_batches = rounds + (rest > rank)

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.steps_per_execution)

    def __iter__(self):
        if self.steps_per_execution == 1:
            yield from self._batches()
            return
        group = []
        for batch in self._batches():
            group.append(batch)
            if len(group) == self.steps_per_execution:
                yield group
                group = []
        if group:
            yield group

    def _batches(self):
        if self.sampler is None:  # evaluation: in the stored order
            generator, order = None, torch.arange(len(self.labels), device=self.labels.device)
        else:  # shuffle and augmentation: from (seed, epoch) alone, the same in every process
            generator = self.sampler.generator()
            order = padded(self.sampler.permutation(generator), self.world_size).to(self.labels.device)
        rank, world_size = self.rank, self.world_size
        for start in range(0, len(order), self.batch_size * world_size):
            dealt = order[start : start + self.batch_size * world_size]
            index = dealt[rank::world_size]
            if len(index) == 0:  # evaluation's last round: fewer images left than processes
                return
            images = self.images[index]
            if self.augment:  # drawn for the whole round: each image its own, whichever process has it
                images = augment_batch(
                    images, self.augment, generator, len(dealt), rank, world_size, self.background, self.white
                )
            yield images, self.labels[index]


class MNISTDataModule(L.LightningDataModule):
    """MNIST (or another torchvision dataset of the MNIST family, e.g. "FashionMNIST").

    The official test set stays the test set; validation is a seeded hold-out of `val_size`
    training images (0 trains on all of them, as the seed does). Pixels are scaled by 1/255 and,
    with `standardize`, shifted and scaled by the training split's mean and std (or by
    `normalization`, a given (mean, std): how a model trained standardised is evaluated). Checkpoints
    record the mean and std (`digits_zoo.data.contract`), so that a model is always fed as it was trained. `train_size`
    keeps that many training images (a label budget, e.g. for transfer experiments). `augment` (the keys of
    `digits_zoo.data.augment.KEYS`; configs/augment/ holds presets) randomly changes every training batch.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        dataset: str = "MNIST",
        batch_size: int = 32,
        steps_per_execution: int = 1,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        train_size: int | None = None,
        standardize: bool = False,
        seed: int = 0,
        download: bool = True,
        augment: dict | None = None,
        normalization: tuple[float, float] | None = None,
    ):
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigError(f"unknown data.dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        self.augment = check_settings(augment)
        self.data_dir = Path(data_dir or default_data_dir()).expanduser().resolve()
        self.dataset_cls = getattr(torchvision.datasets, dataset)
        self.batch_size = check_count("data.batch_size", batch_size)
        self.eval_batch_size = check_count("data.eval_batch_size", eval_batch_size)
        self.steps_per_execution = check_count("data.steps_per_execution", steps_per_execution)
        self.val_size, self.standardize, self.seed, self.download = val_size, standardize, seed, download
        self.train_size = train_size  # a label budget: train on this many of the remaining images
        self.normalization = tuple(normalization) if normalization else None  # (mean, std), once known
        self.num_classes = len(self.dataset_cls.classes)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.dataset_cls.__name__ / "raw"

    @property
    def raw_files(self) -> list[str]:
        return [Path(url).name.removesuffix(".gz") for url, _ in self.dataset_cls.resources]

    def _missing_error(self, reason: str) -> DataError:
        return DataError(
            f"{self.dataset_cls.__name__} files not found ({reason}): expected {', '.join(self.raw_files)} "
            f"in {self.raw_dir}. Copy them there, or point {DATA_DIR_ENV} (or data.data_dir=...) at the "
            f"folder that holds {self.dataset_cls.__name__}/raw."
        )

    def check_files(self) -> bool:
        """Whether the dataset's files are all there; where they are not and download is off, the error
        that says where to put them (a run checks this before it writes anything)."""
        if all((self.raw_dir / name).is_file() for name in self.raw_files):
            return True
        if not self.download:
            raise self._missing_error("download is off")
        return False

    def prepare_data(self) -> None:
        """Download only, with torchvision's own download and checks, and only when files are missing."""
        if self.check_files():
            return
        made = [folder for folder in (self.raw_dir, *self.raw_dir.parents) if not folder.exists()]  # deepest first
        there = set(self.raw_dir.iterdir()) if self.raw_dir.is_dir() else set()
        try:
            for train in (True, False):
                self.dataset_cls(self.data_dir, train=train, download=True)
        except BaseException as error:  # torchvision raises RuntimeError, URLError, ... per mirror; or Ctrl+C
            # a failed download leaves nothing: the files it fetched (some whole, one cut short) and its folders
            for path in set(self.raw_dir.iterdir()) - there if self.raw_dir.is_dir() else ():
                with contextlib.suppress(OSError):
                    path.unlink()
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if not isinstance(error, Exception):
                raise
            last_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise self._missing_error(f"download failed: {last_line}") from error

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # read once, whichever stage asks first
            return
        train_x, train_y = self.read_split(train=True)
        test_x, test_y = self.read_split(train=False)
        if not 0 <= self.val_size < len(train_y):
            raise ConfigError(f"data.val_size must be in [0, {len(train_y)}), got {self.val_size}")
        order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(self.seed))
        val_index, fit_index = order[: self.val_size], order[self.val_size :]
        if self.train_size is not None:
            if not 0 < self.train_size <= len(fit_index):
                raise ConfigError(f"data.train_size must be in [1, {len(fit_index)}], got {self.train_size}")
            fit_index = fit_index[: self.train_size]  # the seeded order makes this a random subset
        splits = {
            "fit": (train_x[fit_index], train_y[fit_index]),
            "val": (train_x[val_index], train_y[val_index]),
            "test": (test_x, test_y),
        }
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        # uint8 (N, H, W) -> float (N, 1, H, W) in [0, 1], on the device the model trains on
        self.splits = {
            name: (x.to(device).unsqueeze(1).float().div_(255), y.to(device)) for name, (x, y) in splits.items()
        }
        self.background, self.white = 0.0, 1.0  # the values of a blank and a white pixel (for augmentation)
        if self.standardize and not self.normalization:
            self.normalization = (self.splits["fit"][0].mean().item(), self.splits["fit"][0].std().item())
        if self.normalization:
            mean, std = self.normalization
            for x, _ in self.splits.values():
                x.sub_(mean).div_(std)
            self.background = float(torch.tensor(-mean) / std)  # in float32, as the pixels
            self.white = float(torch.tensor(1 - mean) / std)

    def read_split(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (N, H, W) and int64 labels, checked for consistency."""
        if not self.raw_dir.is_dir():
            raise self._missing_error("no such folder")
        try:
            dataset = self.dataset_cls(self.data_dir, train=train, download=False)
        except Exception as error:
            raise self._read_error(train, error) from error
        images, labels = dataset.data, dataset.targets
        if (
            images.ndim != 3
            or labels.shape != images.shape[:1]
            or not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes
        ):
            raise DataError(
                f"{self.dataset_cls.__name__} {'training' if train else 'test'} files in {self.raw_dir} are inconsistent: "
                f"{tuple(images.shape)} images, {tuple(labels.shape)} labels. Replace them with the original files."
            )
        return images, labels.long()

    def _read_error(self, train: bool, error: Exception) -> DataError:
        """Name the file that failed to parse (torchvision reads images and labels in one call)."""
        prefix = "train" if train else "t10k"
        for path in sorted(self.raw_dir.glob(f"{prefix}-*-idx?-ubyte")):
            try:
                read_sn3_pascalvincent_tensor(str(path))
            except Exception as file_error:
                return DataError(
                    f"{path} is truncated or corrupt ({one_line(file_error)}); replace it with the original file."
                )
        if "not found" in str(error):
            return self._missing_error("incomplete folder")
        return DataError(f"could not read {self.raw_dir}: {one_line(error)}")

    @property
    def has_validation(self) -> bool:
        return self.val_size > 0

    def _loader(self, split: str, batch_size: int, **kwargs) -> TensorLoader:
        """A loader of this process's share of `split` (all of it, outside DDP)."""
        trainer = self.trainer
        return TensorLoader(
            *self.splits[split],
            batch_size,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            **kwargs,
        )

    def train_dataloader(self) -> TensorLoader:
        # in training, groups of batches only for a module that takes them (DigitClassifier decides
        # in its setup; see digits_zoo.training.loop)
        takes_groups = getattr(self.trainer.lightning_module, "takes_groups", False) if self.trainer else True
        group = self.steps_per_execution if takes_groups else 1
        return self._loader(
            "fit",
            self.batch_size,
            shuffle_seed=self.seed,
            steps_per_execution=group,
            augment=self.augment,
            background=self.background,
            white=self.white,
        )

    def val_dataloader(self) -> TensorLoader:
        return self._loader("val", self.eval_batch_size)

    def test_dataloader(self) -> TensorLoader:
        return self._loader("test", self.eval_batch_size)

    def predict_dataloader(self) -> TensorLoader:
        return self.test_dataloader()
