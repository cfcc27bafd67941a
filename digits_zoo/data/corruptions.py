"""The corruptions of MNIST-C (Mu & Gilmer, 2019), and stroke thickness, remade from MNIST's test set.

Each corruption follows the MNIST-C paper's code (github.com/google-research/mnist-c, corruptions.py)
at the severity MNIST-C uses; `docs/robustness.md` says where this code differs and how close the
results come. A corruption takes uint8 images (N, 28, 28) and a numpy Generator and returns uint8
images (MNIST-C is stored as uint8 too); everything random comes from that Generator, so a seed gives
the same images on every machine. Two more, `thinner` and `thicker`, change the strokes' width as
people's pens do.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

SIZE = 28
CENTRE = (SIZE - 1) / 2  # 13.5: MNIST-C's affine corruptions keep it fixed


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian as MNIST-C calls it (scipy's filter, 'nearest' edges), per image."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)


def _warp(x: np.ndarray, matrices: np.ndarray, mode: str = "bilinear", padding: str = "zeros") -> np.ndarray:
    """skimage.transform.warp with an inverse map per image: `matrices` (N, 2, 3) take an output pixel's
    (column, row) to the input's. Outside the picture is black, as warp's default constant 0."""
    # pixel coordinates -> grid_sample's [-1, 1] (align_corners=True: -1 and 1 are the outer pixels' centres)
    to_unit = np.array([[1 / CENTRE, 0, -1], [0, 1 / CENTRE, -1], [0, 0, 1]])
    to_pixel = np.array([[CENTRE, 0, CENTRE], [0, CENTRE, CENTRE], [0, 0, 1]])
    square = np.concatenate([matrices, np.tile([[[0, 0, 1]]], (len(matrices), 1, 1))], axis=1)
    theta = torch.from_numpy((to_unit @ square @ to_pixel)[:, :2]).float()
    images = torch.from_numpy(x).float().unsqueeze(1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding, align_corners=True)[:, 0].double().numpy()


def _about_centre(linear: np.ndarray) -> np.ndarray:
    """(N, 2, 2) linear maps -> (N, 2, 3) affine maps that keep the centre pixel (13.5, 13.5) fixed."""
    offset = CENTRE * (1 - linear.sum(axis=2))
    return np.concatenate([linear, offset[:, :, None]], axis=2)


def _signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=n)


def shot_noise(x, rng):
    c = 3
    return rng.poisson(x * c) / c


def impulse_noise(x, rng):
    amount = 0.17  # skimage's random_noise(mode="s&p"): this share of pixels, half white, half black
    hit, salt = rng.random(x.shape) < amount, rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(x.dtype), x)


def glass_blur(x, rng):
    sigma, delta, iterations = 0.7, 1, 2
    x = np.uint8(_gaussian(x, sigma) * 255)
    n, images = len(x), np.arange(len(x))
    for _ in range(iterations):  # locally shuffle pixels: each image in turn, the same pixel walk
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                swap = rng.random(n) < 0.5
                dx, dy = rng.integers(-delta, delta, size=(2, n))  # MNIST-C's randint: high excluded
                i, hh, ww = images[swap], h + dy[swap], w + dx[swap]
                x[i, h, w], x[i, hh, ww] = x[i, hh, ww], x[i, h, w]
    return _gaussian(x / 255, sigma)


def motion_blur(x, rng):
    """ImageMagick's motion blur (radius 10, sigma 3): each pixel the Gaussian-weighted mean of the
    21 pixels behind it along a line at a random angle in [-45, 45] degrees, edges repeated."""
    radius, sigma = 10, 3.0
    steps = np.arange(2 * radius + 1)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-45, 45, size=len(x)))
    out = np.zeros_like(x)
    for step, weight in zip(steps, weights):
        dx = np.ceil(step * np.cos(angle) - 0.5)  # whole pixels, as ImageMagick's offsets
        dy = np.ceil(step * np.sin(angle) - 0.5)
        matrices = np.concatenate([np.tile(np.eye(2), (len(x), 1, 1)), np.stack([dx, dy], 1)[:, :, None]], axis=2)
        out += weight * _warp(x, matrices, mode="nearest", padding="border")
    return out


def shear(x, rng):
    c = 0.4 * _signs(rng, len(x))  # skimage's AffineTransform(shear=c): x' = x - sin(c) y, y' = cos(c) y
    linear = np.stack([np.stack([np.ones_like(c), -np.sin(c)], 1), np.stack([np.zeros_like(c), np.cos(c)], 1)], 1)
    return _warp(x, _about_centre(linear))


def rotate(x, rng):
    c = 0.4 * _signs(rng, len(x))  # radians
    linear = np.stack([np.stack([np.cos(c), -np.sin(c)], 1), np.stack([np.sin(c), np.cos(c)], 1)], 1)
    return _warp(x, _about_centre(linear))


def scale(x, rng):
    linear = np.tile(np.eye(2) / 0.7, (len(x), 1, 1))  # the inverse map enlarges: the digit shrinks to 0.7
    return _warp(x, _about_centre(linear))


def translate(x, rng):
    shift = 3 * rng.choice([-1.0, 1.0], size=(len(x), 2))
    matrices = np.concatenate([np.tile(np.eye(2), (len(x), 1, 1)), shift[:, :, None]], axis=2)
    return _warp(x, matrices)


def brightness(x, rng):
    return x + 0.5  # HSV's value + 0.5: for grey pixels every channel, hence the grey value, + 0.5


def stripe(x, rng):
    x = x.copy()
    x[:, :, :7] = 1 - x[:, :, :7]
    x[:, :, 21:] = 1 - x[:, :, 21:]
    return x


def plasma_fractal(rng: np.random.Generator, n: int, size: int = 256, decay: float = 1.4) -> np.ndarray:
    """n diamond-square height maps (n, size, size) in [0, 1], as MNIST-C's fog makes them."""
    maps = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled_mean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]  # squares: centre = mean of corners + wibble
        square = corners + np.roll(corners, -1, axis=1)
        square += np.roll(square, -1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(square)
        centres = maps[:, half:size:step, half:size:step]  # diamonds: edges from centres and corners
        corners = maps[:, 0:size:step, 0:size:step]
        left_right = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(left_right)
        top_bottom = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(top_bottom)
        step, wibble = half, wibble / decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def fog(x, rng):
    c, decay = 3.0, 1.4
    brightest = x.max(axis=(1, 2), keepdims=True)
    out = np.empty_like(x)
    for start in range(0, len(x), 100):  # 100 maps of 256x256 at a time
        part = slice(start, start + 100)
        fractal = plasma_fractal(rng, len(x[part]), decay=decay)[:, :SIZE, :SIZE]
        out[part] = (x[part] + c * fractal) * brightest[part] / (brightest[part] + c)
    return out


def spatter(x, rng):
    loc, spread, sigma, threshold, mud_sigma = 0.65, 0.3, 1, 0.65, 1.5
    liquid = _gaussian(rng.normal(loc, spread, size=x.shape), sigma)
    liquid[liquid < threshold] = 0
    mud = _gaussian((liquid > threshold).astype(np.float64), mud_sigma)
    mud[mud < 0.8] = 0
    return x * (1 - mud) + 63 / 255 * mud


_ROWS, _COLUMNS = np.meshgrid(np.arange(SIZE, dtype=np.float64), np.arange(SIZE, dtype=np.float64), indexing="ij")


def line(c0: float, r0: float, c1: float, r1: float) -> np.ndarray:
    """MNIST-C's line from (column c0, row r0) to (c1, r1): ink fading over 2.3 pixels from the line."""
    if c1 == c0:
        return np.zeros((SIZE, SIZE))
    slope = (r1 - r0) / (c1 - c0)
    distance = np.clip(np.abs(_ROWS - (slope * (_COLUMNS - c0) + r0)), 0, 2.3 - 1e-10)
    ink = np.clip(np.log(1 - distance / 2.3) + 1, 0, 1)
    ink[:, : int(np.floor(c0))] = 0
    ink[:, int(np.ceil(c1)) :] = 0
    return ink


def dotted_line(x, rng):
    out = np.empty_like(x)
    gaps = np.zeros(SIZE, dtype=bool)
    for start in range(0, SIZE, 4):  # dashes of 2 columns, gaps of 2, from column 2 on
        gaps[start : start + 2] = True
    for i in range(len(x)):
        r0, r1 = rng.integers(0, 27, size=2)
        ink = line(0, r0, 27, r1)
        ink[:, gaps] = 0
        out[i] = x[i] + ink
    return out


def zigzag(x, rng):
    a = b = 2.0  # the zigzag's half period and amplitude
    c0, c1 = 2, 25
    out = np.empty_like(x)
    for i in range(len(x)):
        r0 = rng.integers(0, 27)
        r1 = r0 + rng.integers(-5, 5)
        theta = np.arctan((r1 - r0) / (c1 - c0))
        length = (c1 - c0) / np.cos(theta)
        points = [(0.0, 0.0)]
        for k in range(int((length - a) // (2 * a)) + 1):
            points.append(((2 * k + 1) * a, (-1) ** k * b))
        last_peak = (2 * a) * (length // (2 * a))
        if length != last_peak:  # MNIST-C's own end point
            points.append((length, points[-1][1] / (2 * (length - last_peak))))
        turn = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        cs, rs = turn @ np.array(points).T
        cs, rs = cs + c0, rs + r0
        image = x[i]
        for k in range(1, len(cs)):
            image = np.clip(image + line(cs[k - 1], rs[k - 1], cs[k], rs[k]), 0, 1)
        out[i] = image
    return out


def canny_edges(x, rng):
    from skimage.feature import canny  # (scikit-image is slow to import; only this corruption needs it)

    return np.stack([canny(image) for image in x]).astype(np.float64)


_CROSS = ndimage.generate_binary_structure(2, 1)[None]  # a 3x3 plus, per image


def thicker(x, rng):
    """Strokes about 2 pixels wider: grey dilation by a 3x3 plus."""
    return ndimage.grey_dilation(x, footprint=_CROSS)


def thinner(x, rng):
    """Strokes about 1 pixel narrower: grey erosion by a 3x3 plus at twice the resolution."""
    double = ndimage.zoom(x, (1, 2, 2), order=1, grid_mode=True, mode="nearest")
    thin = ndimage.grey_erosion(double, footprint=_CROSS)
    return thin.reshape(len(x), SIZE, 2, SIZE, 2).mean(axis=(2, 4))


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
    "thinner": thinner,
    "thicker": thicker,
}
MNIST_C = tuple(CORRUPTIONS)[:15]  # the paper's fifteen; its mean is over these


def corrupt(name: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (N, 28, 28) through the corruption `name`, as uint8 (rounded, as MNIST-C's files)."""
    out = CORRUPTIONS[name](images.astype(np.float64) / 255, rng)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
