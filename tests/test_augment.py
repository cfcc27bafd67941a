"""data.augment: the presets of configs/augment/, each augmentation on small batches, and its settings' checks."""

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from digits_zoo.data.augment import augment_batch, check_settings, stroke_thickness
from digits_zoo.data.mnist import TensorLoader
from digits_zoo.errors import ConfigError
from tests.conftest import CONFIGS, tiny_overrides

AFFINE = {"degrees": 10, "scale": 0.1, "translate": 0.1}
ROBUST = {
    "degrees": 15,
    "scale": 0.15,
    "translate": 0.1,
    "shear": 10,
    "elastic": {"alpha": 1.4, "sigma": 4.0},
    "thickness": 1,
}
NEW = {
    "shear": {"shear": 20},
    "elastic": {"elastic": {"alpha": 1.4, "sigma": 4.0}},
    "thickness": {"thickness": 1},
    "noise": {"noise": 0.2},
    "erase": {"erase": 0.3},
    "robust": ROBUST,
}


def digits(n: int = 12, generator_seed: int = 0) -> torch.Tensor:
    """Blank images with a bright stroke (a box outline) in a random place: ink on a background of 0."""
    generator = torch.Generator().manual_seed(generator_seed)
    images = torch.zeros(n, 1, 28, 28)
    for image, (top, left) in zip(images, torch.randint(5, 12, (n, 2), generator=generator).tolist()):
        image[0, top : top + 12, left : left + 2] = image[0, top : top + 12, left + 8 : left + 10] = 1
        image[0, top : top + 2, left : left + 10] = image[0, top + 10 : top + 12, left : left + 10] = 1
    return images


def old_random_affine(images, draws, degrees, scale, translate, background=0.0):
    """digits_zoo.data.mnist.random_affine as it was before the other augmentations (runs that used it must
    reproduce, resumed or not)."""
    u = (draws * 2 - 1).to(images.device, non_blocking=True)
    angle = torch.deg2rad(u[:, 0] * degrees)
    zoom = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, 2 * translate * u[:, 2]], 1), torch.stack([sin, cos, 2 * translate * u[:, 3]], 1)], 1
    ).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - background, grid, align_corners=False) + background


def epoch(settings, images, epoch=0, batch_size=5, background=0.0, rank=0, world_size=1):
    loader = TensorLoader(
        images,
        torch.arange(len(images)),
        batch_size,
        shuffle_seed=7,
        augment=check_settings(settings),
        rank=rank,
        world_size=world_size,
        background=background,
    )
    loader.sampler.set_epoch(epoch)
    return list(loader)


@pytest.mark.parametrize("background", [0.0, -0.4242])
def test_the_affine_keys_alone_make_the_images_they_always_made(background):
    images = digits(12) * 3 + background
    generator = torch.Generator().manual_seed(7 * 1_000_003 + 2)  # the loader's for seed 7, epoch 2
    order = torch.randperm(12, generator=generator)
    for (x, y), index in zip(epoch(AFFINE, images, epoch=2, background=background), order.split(5)):
        draws = torch.rand(len(index), 4, generator=generator)
        assert torch.equal(y, index)
        assert torch.equal(x, old_random_affine(images[index], draws, **AFFINE, background=background))


@pytest.mark.parametrize("settings", NEW.values(), ids=NEW.keys())
def test_each_augmentation_is_fixed_by_seed_and_epoch_changes_images_and_keeps_labels(settings):
    images = digits(12)
    plain = epoch({}, images)
    first = epoch(settings, images)
    for (x, y), (plain_x, plain_y) in zip(first, plain):
        assert torch.equal(y, plain_y) and x.shape == plain_x.shape
        assert not torch.equal(x, plain_x)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, epoch(settings, images)))
    assert not torch.equal(first[0][0], epoch(settings, images, epoch=1)[0][0])


@pytest.mark.parametrize("settings", [NEW["shear"], NEW["elastic"]], ids=["shear", "elastic"])
def test_the_resampling_augmentations_keep_the_ink_roughly(settings):
    images = digits(24)
    changed = augment_batch(images, check_settings(settings), torch.Generator().manual_seed(0), len(images))
    ratio = changed.sum((1, 2, 3)) / images.sum((1, 2, 3))  # (a distortion stretches some strokes, squeezes others)
    assert ((ratio > 0.5) & (ratio < 1.5)).all() and abs(ratio.mean() - 1) < 0.1
    assert changed.min() >= 0 and changed.max() <= 1  # blank stays blank, ink stays ink


def test_thickness_thins_keeps_or_thickens_each_stroke():
    images = digits(3)
    thinner, same, thicker = stroke_thickness(images, torch.tensor([-1, 0, 1]), 1, 0.0)
    assert thinner.sum() < images[0].sum() and torch.equal(same, images[1]) and thicker.sum() > images[2].sum()
    assert thinner.sum() > 0 and (thinner <= images[0]).all() and (thicker >= images[2]).all()
    # a radius of 2 changes by up to two pixels: more than one
    twice = stroke_thickness(images, torch.tensor([-2, 2, 2]), 2, 0.0)
    assert twice[1].sum() > thicker.sum() and twice[0].sum() < thinner.sum()
    # every image draws its own: all three changes occur in a batch
    drawn = augment_batch(digits(30), {"thickness": 1}, torch.Generator().manual_seed(0), 30)
    ink = drawn.sum((1, 2, 3)) - digits(30).sum((1, 2, 3))
    assert (ink < 0).any() and (ink == 0).any() and (ink > 0).any()


def test_noise_turns_a_share_of_each_images_pixels_black_or_white():
    images = torch.full((200, 1, 28, 28), 0.5)  # grey: every black or white pixel shows
    noisy = augment_batch(images, {"noise": 0.2}, torch.Generator().manual_seed(0), 200)
    changed = (noisy != images).flatten(1).float().mean(1)
    assert changed.max() < 0.25 and changed.mean() == pytest.approx(0.1, abs=0.02)  # a share in [0, 0.2) per image
    assert set(noisy[noisy != images].unique().tolist()) == {0.0, 1.0}


def test_erase_paints_one_rectangle_of_one_dark_grey_over_each_image():
    images = torch.ones(300, 1, 28, 28)  # white: every painted pixel shows
    erased = augment_batch(images, {"erase": 0.3}, torch.Generator().manual_seed(0), 300)
    for image in erased[:, 0]:
        painted = image != 1
        rows, columns = painted.any(1).nonzero(), painted.any(0).nonzero()
        if len(rows):  # one flat rectangle: its bounding box is all painted, in one grey from black to mid-grey
            assert (
                painted.sum() == len(rows) * len(columns) == (rows[-1] - rows[0] + 1) * (columns[-1] - columns[0] + 1)
            )
            assert len(image[painted].unique()) == 1 and 0 <= image[painted][0] <= 0.5
    share = (erased != 1).flatten(1).float().mean(1)
    assert share.max() < 0.34 and share.mean() == pytest.approx(0.15, abs=0.02)  # up to 0.3 of the image
    heights = (erased != 1).any(3).sum((1, 2)).float()
    widths = (erased != 1).any(2).sum((1, 2)).float()
    tall, wide = heights > 2 * widths, widths > 2 * heights
    assert tall.any() and wide.any()  # aspect ratios from 1/3 to 3


def test_standardised_images_are_augmented_as_the_raw_ones_around_their_blank():
    mean, std = 0.13, 0.31
    images = digits(8)
    settings = {**ROBUST, "noise": 0.2, "erase": 0.3}
    raw = augment_batch(images, settings, torch.Generator().manual_seed(3), 8)
    standardised = augment_batch(
        (images - mean) / std,
        settings,
        torch.Generator().manual_seed(3),
        8,
        background=-mean / std,
        white=(1 - mean) / std,
    )
    assert torch.allclose(standardised, (raw - mean) / std, atol=1e-5)


@pytest.mark.parametrize("settings", NEW.values(), ids=NEW.keys())
def test_the_processes_augment_their_shares_as_one_process_augments_the_whole_batch(settings):
    images = digits(12)
    whole = epoch(settings, images, batch_size=6)
    halves = [epoch(settings, images, batch_size=3, rank=rank, world_size=2) for rank in (0, 1)]
    for (x, _), (x0, _), (x1, _) in zip(whole, *halves):
        assert torch.allclose(torch.stack([x0, x1], dim=1).flatten(0, 1), x, atol=1e-6)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"sheer": 5}, "unknown data.augment key 'sheer'; did you mean shear?"),
        ({"elastic": {"alpha": 1, "sigma": 4, "alfa": 2}}, "unknown data.augment.elastic key 'alfa'"),
        ({"elastic": {"alpha": 1}}, "data.augment.elastic must be {alpha: PIXELS, sigma: PIXELS}"),
        ({"elastic": {"alpha": 1, "sigma": 0}}, "data.augment.elastic.sigma must be a finite number above 0"),
        ({"degrees": -5}, "data.augment.degrees must be a finite number of at least 0"),
        ({"scale": 1}, "data.augment.scale must be below 1"),
        ({"shear": "ten"}, "data.augment.shear must be a finite number"),
        ({"thickness": 1.5}, "data.augment.thickness must be a whole number of at least 0"),
        ({"erase": 1}, "data.augment.erase must be below 1"),
        (5, "data.augment must be a mapping of degrees, scale"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_key(settings, message):
    with pytest.raises(ConfigError) as error:
        check_settings(settings)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "override", ["data.augment.sheer=5", "+data.augment.sheer=5", "augment=robust data.augment.sheer=5"]
)
def test_an_unknown_augment_key_on_the_command_line_is_one_line_naming_the_allowed_keys(run_cli, override):
    code, err = run_cli(*override.split())
    assert code == 1
    assert err == (
        "error: unknown data.augment key 'sheer'; did you mean shear? "
        "allowed keys: degrees, scale, translate, shear, elastic, thickness, noise, erase\n"
    )


def compose_train(*overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=["paths.output_dir=unused", *overrides])


def test_the_presets_set_data_augment_and_take_overrides(tiny_data):
    assert compose_train().data.augment is None
    tiny = [*tiny_overrides(tiny_data), "data.steps_per_execution=1"]
    cfg = compose_train("augment=robust", "data.augment.elastic.alpha=3", *tiny)
    assert check_settings(cfg.data.augment) == {**ROBUST, "elastic": {"alpha": 3.0, "sigma": 4.0}}
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    x, _ = next(iter(datamodule.train_dataloader()))
    assert x.shape == (32, 1, 28, 28)
    # vgg_bn's augmentation is the affine preset, which another preset replaces, or ~augment drops
    assert check_settings(compose_train("experiment=vgg_bn").data.augment) == AFFINE
    assert check_settings(compose_train("experiment=vgg_bn", "augment=elastic").data.augment) == NEW["elastic"]
    assert compose_train("experiment=vgg_bn", "~augment").data.augment is None
