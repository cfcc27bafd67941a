"""Random changes to the training images (`data.augment`), made to a whole batch at once on its own device.

`check_settings` checks the settings; `augment_batch` applies them: a stroke-thickness change (grey erosion or
dilation), then one resampling that holds the affine transform and the elastic distortion, then noise, then an erased
patch. Every random number
is drawn for the whole round of images dealt to the processes and each process takes its share, so an image is
changed in the same way whichever process has it. The draws come in a fixed order, the affine ones first: the
settings {degrees, scale, translate} alone draw and compute exactly what they always have, so that older runs
and their resumes reproduce.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from digits_zoo.errors import ConfigError, check_number

AFFINE = ("degrees", "scale", "translate")  # four draws per image: angle, zoom, x shift, y shift
ELASTIC = ("alpha", "sigma")
KEYS = (*AFFINE, "shear", "elastic", "thickness", "noise", "erase")
ERASE_GREY = 0.5  # an erased patch's grey: uniform from black to half-way to white


def _unknown(where: str, key: object, allowed: tuple[str, ...]) -> ConfigError:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return ConfigError(f"unknown {where} key {str(key)!r}; {hint}allowed keys: {', '.join(allowed)}")


def unknown_key(full_key: str) -> ConfigError | None:
    """The error for a key under data.augment that is none of its keys (a command-line override that Hydra
    refuses before the data module is built); None for any other key."""
    parent, _, key = full_key.rpartition(".")
    allowed = {"data.augment": KEYS, "data.augment.elastic": ELASTIC}.get(parent)
    return _unknown(parent, key, allowed) if allowed and key not in allowed else None


def _below(key: str, value: object, limit: float) -> float:
    number = check_number(key, value, positive=False)
    if number >= limit:
        raise ConfigError(f"{key} must be below {limit}, got {value!r}")
    return number


def _elastic(key: str, value: object) -> dict[str, float]:
    if not isinstance(value, Mapping) or set(ELASTIC) - set(value):
        raise ConfigError(f"{key} must be {{alpha: PIXELS, sigma: PIXELS}}, got {value!r}")
    if unknown := [name for name in value if name not in ELASTIC]:
        raise _unknown(key, unknown[0], ELASTIC)
    return {
        "alpha": check_number(f"{key}.alpha", value["alpha"], positive=False),
        "sigma": check_number(f"{key}.sigma", value["sigma"], positive=True),
    }


def _thickness(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"{key} must be a whole number of at least 0 (the most pixels a stroke changes by), got {value!r}"
        )
    return value


CHECKS = {
    "degrees": lambda key, value: check_number(key, value, positive=False),
    "scale": lambda key, value: _below(key, value, 1),  # a zoom of 1 - scale must stay above 0
    "translate": lambda key, value: check_number(key, value, positive=False),
    "shear": lambda key, value: _below(key, value, 90),
    "elastic": _elastic,
    "thickness": _thickness,
    "noise": lambda key, value: _below(key, value, 1),  # a share of the pixels
    "erase": lambda key, value: _below(key, value, 1),  # a share of the image
}


def check_settings(settings: Mapping | None) -> dict | None:
    """`data.augment` as a plain dict of checked values (None for no augmentation), or a ConfigError that
    names the key that is unknown or the value that cannot work."""
    if not settings:
        return None
    if not isinstance(settings, Mapping):
        raise ConfigError(f"data.augment must be a mapping of {', '.join(KEYS)} (or null), got {settings!r}")
    checked = {}
    for key, value in settings.items():
        if key not in CHECKS:
            raise _unknown("data.augment", key, KEYS)
        checked[key] = CHECKS[key](f"data.augment.{key}", value)
    return checked


def augment_batch(
    images: torch.Tensor,
    settings: dict,
    generator: torch.Generator | None,
    dealt: int,
    rank: int = 0,
    world_size: int = 1,
    background: float = 0.0,
    white: float = 1.0,
) -> torch.Tensor:
    """`images` (this process's share, every `world_size`-th image from `rank` of a round of `dealt` images)
    changed as `settings` (checked by `check_settings`) say; `background` is the value of a blank pixel, `white`
    that of a white one."""

    def draw(*shape: int) -> torch.Tensor:  # uniform in [0, 1), for the whole round; this process's share
        return torch.rand(dealt, *shape, generator=generator)[rank::world_size]

    device = images.device
    affine = draw(4) if any(key in settings for key in AFFINE) else None
    shear = draw(1) if "shear" in settings else None
    field = draw(2, *images.shape[-2:]) if "elastic" in settings else None
    radius = settings.get("thickness", 0)
    change = torch.randint(-radius, radius + 1, (dealt,), generator=generator)[rank::world_size] if radius else None
    noise = draw(3, *images.shape[-2:]) if settings.get("noise") else None  # share, hit, salt: per pixel
    erase = draw(5) if settings.get("erase") else None  # area, aspect, left, top, grey

    if change is not None:
        images = stroke_thickness(images, change.to(device, non_blocking=True), radius, background)
    if affine is not None or shear is not None or field is not None:
        images = _resampled(images, settings, affine, shear, field, background)
    if noise is not None:
        images = salt_and_pepper(images, noise.to(device, non_blocking=True), settings["noise"], background, white)
    if erase is not None:
        images = erased(images, erase.to(device, non_blocking=True), settings["erase"], background, white)
    return images


def _resampled(images, settings, affine, shear, field, background: float) -> torch.Tensor:
    """The images through one grid_sample: the affine transform (with the x-shear) and the elastic field."""
    device = images.device
    if affine is None:
        theta = torch.eye(2, 3, device=device).expand(len(images), 2, 3)
    else:
        u = (affine * 2 - 1).to(device, non_blocking=True)
        theta = affine_matrix(u, *(settings.get(key, 0.0) for key in AFFINE))
    if shear is not None:  # an x-shear first: the matrix times [[1, tan], [0, 1]]
        angle = torch.deg2rad((shear[:, 0] * 2 - 1).to(device, non_blocking=True) * settings["shear"])
        tan = torch.tan(angle)[:, None]
        theta = torch.stack([theta[:, :, 0], theta[:, :, 1] + theta[:, :, 0] * tan, theta[:, :, 2]], 2)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    if field is not None:
        grid = grid + elastic_displacement(field.to(device, non_blocking=True), **settings["elastic"]).to(grid.dtype)
    return F.grid_sample(images - background, grid, align_corners=False) + background


def salt_and_pepper(images: torch.Tensor, draws: torch.Tensor, most: float, black: float, white: float) -> torch.Tensor:
    """Each image with a share of its pixels, uniform in [0, `most`) per image, set to black or white (half
    each): sensor noise and specks. `draws` (N, 3, H, W) uniform in [0, 1): the share (from the first pixel's
    draw), whether each pixel is hit, and whether it turns white."""
    share = draws[:, 0, :1, :1].unsqueeze(1) * most
    hit = draws[:, 1:2] < share
    return torch.where(hit, torch.where(draws[:, 2:3] < 0.5, white, black).to(images.dtype), images)


def erased(images: torch.Tensor, draws: torch.Tensor, most: float, black: float, white: float) -> torch.Tensor:
    """Each image with a rectangle painted over in one flat grey (Zhong et al. 2017's random erasing): a blot or a
    part of a stroke hidden. `draws` (N, 5) uniform in [0, 1): its area, a share of the image in [0, `most`); its
    aspect ratio, log-uniform in [1/3, 3]; where it lies (wholly inside the image); its grey, from black to
    `ERASE_GREY` of the way to white."""
    height, width = images.shape[-2:]
    area = draws[:, 0] * most * height * width
    aspect = torch.exp((draws[:, 1] * 2 - 1) * math.log(3))
    rows = torch.sqrt(area * aspect).round().clamp(max=height)
    columns = torch.sqrt(area / aspect).round().clamp(max=width)
    top = (draws[:, 2] * (height - rows + 1)).floor()
    left = (draws[:, 3] * (width - columns + 1)).floor()
    row, column = torch.arange(height, device=images.device), torch.arange(width, device=images.device)
    inside_rows = (row >= top[:, None]) & (row < (top + rows)[:, None])
    inside_columns = (column >= left[:, None]) & (column < (left + columns)[:, None])
    patch = (inside_rows[:, :, None] & inside_columns[:, None, :]).unsqueeze(1)
    grey = (black + draws[:, 4] * ERASE_GREY * (white - black)).view(-1, 1, 1, 1).to(images.dtype)
    return torch.where(patch, grey, images)


def affine_matrix(u: torch.Tensor, degrees: float, scale: float, translate: float) -> torch.Tensor:
    """Per image, the (2, 3) matrix that maps output to input coordinates (as `affine_grid` takes it): a rotation by
    up to `degrees`, a zoom by up to 1 +- `scale` and a shift by up to `translate` of the image's size, from four
    uniform draws in [-1, 1) per image (`u`)."""
    angle = torch.deg2rad(u[:, 0] * degrees)
    zoom = 1 + u[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # the grid maps output to input
    return torch.stack(
        [torch.stack([cos, -sin, 2 * translate * u[:, 2]], 1), torch.stack([sin, cos, 2 * translate * u[:, 3]], 1)], 1
    )


def elastic_displacement(field: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """Simard et al. (2003)'s elastic distortion, as a shift of `affine_grid`'s (N, H, W, 2) grid: `field` holds
    uniform draws in [0, 1) per image, pixel and axis (N, 2, H, W); the random field in [-1, 1] is smoothed with a
    gaussian of `sigma` pixels and scaled so that `alpha` is its root-mean-square displacement in pixels (away
    from the border; Simard's alpha multiplies the smoothed field itself, whose size depends on sigma)."""
    height, width = field.shape[-2:]
    (rows, row_squares), (columns, column_squares) = (gaussian_matrix(n, sigma, field) for n in (height, width))
    smooth = rows @ (field * 2 - 1) @ columns.T  # the separable convolution, as two small matrix products
    rms = math.sqrt(row_squares * column_squares / 3)  # of a smoothed uniform field in [-1, 1]
    # pixels -> grid units (with align_corners=False the image spans 2 units): x from channel 0, y from 1
    scale = torch.tensor([2 / width, 2 / height], device=field.device, dtype=field.dtype) * (alpha / rms)
    return smooth.permute(0, 2, 3, 1) * scale


def gaussian_matrix(size: int, sigma: float, like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The (size, size) matrix that convolves a line of `size` pixels with a normalised gaussian of `sigma` pixels
    (zero beyond the line's ends), and the sum of the kernel's squares."""
    kernel = torch.exp(-0.5 * (torch.arange(1 - size, size, dtype=like.dtype, device=like.device) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    index = torch.arange(size, device=like.device)
    return kernel[index[:, None] - index[None, :] + size - 1], float(kernel.square().sum())


def stroke_thickness(images: torch.Tensor, change: torch.Tensor, radius: int, background: float) -> torch.Tensor:
    """Each image's strokes thinned (`change` < 0: grey erosion) or thickened (> 0: grey dilation), |change| times,
    or kept (0), with the cross of a pixel and its four neighbours (the 3 x 3 square would erase most of MNIST's
    strokes of two or three pixels). Ink is brighter than `background` (also when standardised), which the border
    is padded with."""
    out, thicker, thinner = images, images, images
    for k in range(1, radius + 1):
        thicker, thinner = cross(thicker, background, torch.maximum), cross(thinner, background, torch.minimum)
        out = torch.where((change == k).view(-1, 1, 1, 1), thicker, out)
        out = torch.where((change == -k).view(-1, 1, 1, 1), thinner, out)
    return out


def cross(images: torch.Tensor, background: float, pick) -> torch.Tensor:
    """`pick` (torch.maximum or torch.minimum) of each pixel and its four neighbours, beyond the border `background`
    (shifted views: CPU max_pool2d takes twenty times longer)."""
    padded = F.pad(images, (1, 1, 1, 1), value=background)
    out = padded[..., 1:-1, 1:-1]
    for shifted in (padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]):
        out = pick(out, shifted)
    return out
