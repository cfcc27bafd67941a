from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.errors import ConfigError, DataError
from tests.idx import FILES, write_dataset


def datamodule(root, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(root, download=False, **{"val_size": 200, "batch_size": 32, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_splits_come_from_the_official_files(tiny_data):
    dm = datamodule(tiny_data)
    (fit_x, fit_y), (val_x, val_y), (_test_x, test_y) = (dm.splits[s] for s in ("fit", "val", "test"))
    assert (len(fit_y), len(val_y), len(test_y)) == (1000, 200, 300)
    assert fit_x.shape == (1000, 1, 28, 28) and fit_x.dtype == torch.float32
    assert fit_x.min() >= 0 and fit_x.max() == 1  # scaled by 1/255
    assert sorted(set(test_y.tolist())) == list(range(10))
    # validation is a hold-out of the training images, never the test images
    train_rows = {row.tobytes() for row in torch.cat([fit_x, val_x]).flatten(1).numpy()}
    assert len(train_rows) == 1200
    assert not {row.tobytes() for row in val_x.flatten(1).numpy()} & {row.tobytes() for row in fit_x.flatten(1).numpy()}


def test_no_hold_out_trains_on_every_image(tiny_data):
    dm = datamodule(tiny_data, val_size=0)
    assert len(dm.splits["fit"][1]) == 1200 and len(dm.splits["val"][1]) == 0
    assert not dm.has_validation


def test_hold_out_as_large_as_the_training_set_is_refused(tiny_data):
    with pytest.raises(ConfigError, match="val_size"):
        datamodule(tiny_data, val_size=1200)


def test_each_epoch_covers_every_image_once_in_an_order_fixed_by_seed_and_epoch(tiny_data):
    def epoch_labels(seed, epoch):
        loader = datamodule(tiny_data, seed=seed).train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == 32  # ceil(1000 / 32): the last, short batch is kept
        assert len(batches[-1][1]) == 1000 - 31 * 32
        return torch.cat([x.flatten(1) for x, _ in batches])

    first = epoch_labels(seed=1, epoch=0)
    assert torch.equal(first, epoch_labels(seed=1, epoch=0))
    assert not torch.equal(first, epoch_labels(seed=1, epoch=1))
    assert not torch.equal(first, epoch_labels(seed=2, epoch=0))
    fit_x = datamodule(tiny_data, seed=1).splits["fit"][0].flatten(1)
    assert torch.equal(first.sort(dim=0).values, fit_x.sort(dim=0).values)


def test_evaluation_batches_are_in_order_and_complete(tiny_data):
    dm = datamodule(tiny_data, eval_batch_size=128)
    loader = dm.test_dataloader()
    labels = torch.cat([y for _, y in loader])
    assert len(loader) == 3 and torch.equal(labels, dm.splits["test"][1])


def test_standardize_uses_the_training_split_statistics(tiny_data):
    fit_x = datamodule(tiny_data, standardize=True).splits["fit"][0]
    assert abs(fit_x.mean().item()) < 1e-4 and abs(fit_x.std().item() - 1) < 1e-4


def test_missing_files_name_the_folder_the_files_and_the_fix(tmp_path):
    dm = MNISTDataModule(tmp_path / "nowhere", download=False)
    with pytest.raises(DataError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert all(name in message for pair in FILES.values() for name in pair)
    assert "DIGITS_ZOO_DATA_DIR" in message and "\n" not in message


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITS_ZOO_DATA_DIR", str(tmp_path))
    assert MNISTDataModule().data_dir == tmp_path
    monkeypatch.delenv("DIGITS_ZOO_DATA_DIR")
    assert MNISTDataModule().data_dir.name == "data"


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"\x00\x00\x07\x09" + b[4:], lambda b: b + b"\x00" * 10],
    ids=["truncated", "wrong magic", "trailing bytes"],
)
@pytest.mark.parametrize("file", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_a_damaged_file_is_named_never_read_silently(tmp_path, damage, file):
    root = write_dataset(tmp_path, n_train=300, n_test=100)
    path = root / "MNIST" / "raw" / file
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=file) as info:
        datamodule(root, val_size=10)
    assert "\n" not in str(info.value)


def test_mismatched_image_and_label_counts_are_refused(tmp_path):
    root = write_dataset(tmp_path, n_train=300, n_test=100)
    other = write_dataset(tmp_path / "other", n_train=301, n_test=100)
    (root / "MNIST/raw/train-labels-idx1-ubyte").write_bytes((other / "MNIST/raw/train-labels-idx1-ubyte").read_bytes())
    with pytest.raises(DataError, match="inconsistent"):
        datamodule(root, val_size=10)


def test_steps_per_execution_groups_the_same_batches_in_the_same_order(tiny_data):
    single = datamodule(tiny_data, steps_per_execution=1).train_dataloader()
    grouped = datamodule(tiny_data, steps_per_execution=5).train_dataloader()
    groups = list(grouped)
    assert len(grouped) == len(groups) == 7 and [len(g) for g in groups] == [5] * 6 + [2]  # 32 batches
    assert grouped.num_batches == single.num_batches == 32
    for (x1, y1), (x2, y2) in zip(single, [batch for group in groups for batch in group]):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_augmentation_is_fixed_by_seed_and_epoch_and_keeps_labels(tiny_data):
    augment = {"degrees": 15, "scale": 0.1, "translate": 0.1}

    def first_batch(epoch, **kwargs):
        loader = datamodule(tiny_data, seed=3, **kwargs).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))

    plain_x, plain_y = first_batch(0)
    x, y = first_batch(0, augment=augment)
    assert torch.equal(y, plain_y) and x.shape == plain_x.shape and not torch.equal(x, plain_x)
    assert torch.equal(x, first_batch(0, augment=augment)[0])
    assert not torch.equal(x, first_batch(1, augment=augment)[0])
    assert x.min() >= 0 and x.max() <= 1  # blank pixels stay blank


def test_augmentation_pads_with_the_standardized_blank(tiny_data):
    dm = datamodule(tiny_data, standardize=True, augment={"degrees": 0, "scale": 0.0, "translate": 0.5})
    x, _ = next(iter(dm.train_dataloader()))
    assert torch.isclose(x.min(), torch.tensor(dm.background), atol=1e-5)


def test_a_label_budget_keeps_a_seeded_subset_of_the_training_images(tiny_data):
    dm = datamodule(tiny_data, train_size=100)
    assert len(dm.splits["fit"][1]) == 100 and len(dm.splits["val"][1]) == 200
    assert torch.equal(dm.splits["fit"][0], datamodule(tiny_data, train_size=100).splits["fit"][0])
    with pytest.raises(ConfigError, match="train_size"):
        datamodule(tiny_data, train_size=1001)


@pytest.mark.parametrize("stop", [URLError("unreachable"), KeyboardInterrupt()], ids=["offline", "ctrl-c"])
def test_a_download_that_fails_half_way_leaves_nothing_behind(tmp_path, monkeypatch, stop):
    """The first file arrives (its .gz and what it unpacks to), the next one fails: none of it stays,
    nor the folders made for it; what was there before is kept."""

    def download(url, download_root, filename, md5):
        if any(Path(download_root).iterdir()):
            raise stop
        (Path(download_root) / filename).write_bytes(b"fetched")
        (Path(download_root) / filename.removesuffix(".gz")).write_bytes(b"unpacked")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", download)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("a file of the user's")
    dm = MNISTDataModule(tmp_path / "data", download=True)
    if isinstance(stop, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            dm.prepare_data()
    else:
        with pytest.raises(DataError, match=r"^MNIST files not found \(download failed: .*unreachable") as info:
            dm.prepare_data()
        assert "\n" not in str(info.value)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["data", "data/mine.txt"]
