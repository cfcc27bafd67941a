"""People's own digit pictures -> 28x28 inputs prepared the way MNIST itself was prepared.

MNIST's recipe (LeCun et al.): ink bright on a dark background, the digit's bounding box scaled
to fit a 20x20 box with its aspect ratio kept (antialiased, hence grey edges), then placed in a
28x28 field so that the centre of mass of the pixel intensities is at the centre, (14, 14) in
pixel indices (the MNIST test set's mean is (13.99, 14.01)).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digits_zoo.errors import DigitsZooError

SIZE, BOX = 28, 20
# Ink is what stands out from the background by more than this share of the picture's contrast:
# paper texture, JPEG ringing and sensor noise stay below it, pen strokes well above it.
INK_THRESHOLD = 0.2
# Less contrast than this (in 0-255 levels) between background and brightest pixel: nothing drawn.
MIN_CONTRAST = 16
# Larger pictures are box-averaged to about this many pixels before they are prepared: the digit
# ends up 20 pixels tall, so finer detail cannot reach the model, and the work and memory per
# picture stay bounded. A JPEG is decoded at 1/2, 1/4 or 1/8 of its size where that still gives
# WORK_PIXELS, so every JPEG read (at most Pillow's 89 MP) decodes to under 4 * WORK_PIXELS.
WORK_PIXELS = 1024 * 1024
# Pictures that would decode to more pixels are refused (the demo's limit is lower): this bounds
# the PNG, TIFF or BMP of a large scan (A4 at 600 dpi: 35 MP).
MAX_PIXELS = 50_000_000


class ImageError(DigitsZooError):
    """A picture that cannot be read or holds no digit; the message says what is wrong."""


def read_grey(source: str | Path | bytes, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """The picture in the file `source` (or in `source`'s encoded bytes, e.g. a PNG sent to the
    demo) as float32 greyscale in [0, 255], at most about WORK_PIXELS large. `ImageError` if it cannot
    be read, or if decoding it would make more than `max_pixels` pixels (checked before decoding:
    a small PNG can unpack to a huge picture; a JPEG is decoded at 1/2, 1/4 or 1/8 of its size
    where that still gives WORK_PIXELS)."""
    if isinstance(source, bytes):
        if not source:
            raise ImageError("empty image")
        file: Path | io.BytesIO = io.BytesIO(source)
    else:
        file = Path(source)
        if not file.is_file():
            raise ImageError("no such file" if not file.exists() else "not a file")
        if file.stat().st_size == 0:
            raise ImageError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns of pictures over Image.MAX_IMAGE_PIXELS (89 MP) and refuses twice that: refuse
            # both (catch_warnings is not thread-safe, but the demo's threads all set this same filter)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > WORK_PIXELS:
                    scale = math.sqrt(width * height / WORK_PIXELS)
                    image.draft(None, (max(1, int(width / scale)), max(1, int(height / scale))))
                if max_pixels is not None and image.width * image.height > max_pixels:
                    raise ImageError(
                        f"too large: {width}x{height} pixels, at most {max_pixels:,} are read; scale it down"
                    )
                image.load()  # decode now: a truncated file fails here, not later
                return to_grey(image)
    except UnidentifiedImageError:
        raise ImageError("not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"too large to decode safely ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's ways of saying "corrupt"
        raise ImageError(f"truncated or corrupt image ({' '.join(str(error).split())})") from None


def _shrunk(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode`, box-averaged by a whole factor to at most about WORK_PIXELS pixels (a
    transparent picture premultiplied by its alpha, as Pillow's `reduce` does)."""
    if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):  # palettes, 1-bit, 16-bit...: no reduce
        image = image.convert(mode)
    if image.width * image.height > WORK_PIXELS:
        image = image.reduce(math.ceil(math.sqrt(image.width * image.height / WORK_PIXELS)))
    return image if image.mode == mode else image.convert(mode)


def to_grey(image: Image.Image) -> np.ndarray:
    """Float32 greyscale in [0, 255], at most about WORK_PIXELS large: upright as the camera meant,
    transparency resolved."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # phone photos are often stored sideways
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16-bit greyscale PNG or TIFF
        return np.asarray(_shrunk(image, "I"), dtype=np.float32) / 257
    if image.mode == "F":  # a float TIFF: in [0, 1] or in [0, 255]
        grey = np.asarray(_shrunk(image, "F"), dtype=np.float32)
        return grey * 255 if grey.max() <= 1 else grey
    key = image.info.get("transparency")
    if isinstance(key, (int, tuple)) or ("A" not in image.getbands() and key is None):
        # A key colour (one palette entry, grey level or colour made transparent) is the paper the
        # digit was drawn on, and its soft edges blend into it: the picture is read as its colours.
        grey = np.asarray(_shrunk(image, "L"), dtype=np.float32)
        if key is None or np.ptp(grey) >= MIN_CONTRAST:
            return grey
        # (unless the strokes are in the key colour themselves: then only the transparency shows them)
    rgba = _shrunk(image, "RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
    grey = np.asarray(rgba.convert("L"), dtype=np.float32)
    # Seen on a page, transparency is white. But strokes drawn on a transparent canvas (most of
    # the picture transparent) may be white themselves, so there the backdrop is whichever of
    # black or white contrasts with the visible pixels.
    background = 255.0
    if (alpha < 0.5).mean() > 0.5 and (alpha * grey).sum() > 127 * alpha.sum():
        background = 0.0
    return alpha * grey + (1 - alpha) * background


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of a frame about 2% of the picture wide (at least one pixel)."""
    k = max(1, min(grey.shape) // 50)
    return np.concatenate([grey[:k].ravel(), grey[-k:].ravel(), grey[:, :k].ravel(), grey[:, -k:].ravel()])


def to_mnist(grey: np.ndarray) -> np.ndarray:
    """A greyscale picture (any size, either polarity) -> the 28x28 uint8 digit, MNIST-style."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or min(grey.shape) == 0:
        raise ImageError(f"expected a 2-D greyscale picture, got shape {grey.shape}")
    # The background is what the border mostly shows. If it is on the light side of the
    # picture's range, this is dark ink on paper: invert so that ink is bright, as in MNIST.
    background = float(np.median(_border(grey)))
    if background > (grey.min() + grey.max()) / 2:
        grey, background = 255 - grey, 255 - background
    contrast = float(grey.max()) - background
    if contrast < MIN_CONTRAST:
        raise ImageError("no digit found (the picture is blank)")
    # Background to 0, brightest ink to 1 (MNIST strokes peak at full brightness), then drop
    # what is below the ink threshold so texture neither widens the box nor greys the field.
    ink = np.clip((grey - background) / contrast, 0, 1)
    ink = np.clip((ink - INK_THRESHOLD) / (1 - INK_THRESHOLD), 0, 1)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]

    # Fit into 20x20 keeping the aspect ratio; Lanczos on floats antialiases large reductions.
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(crop * 255).resize(size, Image.Resampling.LANCZOS))
    digit = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    if not digit.any():  # a speck that vanished when scaled
        raise ImageError("no digit found (only specks)")

    # Centre of mass of what the model will see -> (14, 14), by a whole-pixel shift.
    mass = digit.astype(np.float64)
    cy = (mass.sum(axis=1) * np.arange(mass.shape[0])).sum() / mass.sum()
    cx = (mass.sum(axis=0) * np.arange(mass.shape[1])).sum() / mass.sum()
    top = int(np.clip(round(SIZE / 2 - cy), 0, SIZE - digit.shape[0]))
    left = int(np.clip(round(SIZE / 2 - cx), 0, SIZE - digit.shape[1]))
    field = np.zeros((SIZE, SIZE), dtype=np.uint8)
    field[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return field


def array_grey(array: np.ndarray) -> np.ndarray:
    """A picture held in an array -> float32 greyscale in [0, 255]: height x width grey, or height x
    width x 3 (RGB) or x 4 (RGBA) colour read as a file of it would be; 8-bit, or floats in [0, 1]."""
    if array.dtype.kind not in "biuf":
        raise ImageError(f"expected an array of numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        if array.dtype.kind in "bf" and array.max() <= 1:
            array = array * 255
        return to_grey(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)))
    if array.ndim != 2:
        raise ImageError(
            f"expected a picture of height x width (grey) or height x width x 3 or 4 (colour), got an array of "
            f"shape {array.shape}; give several pictures as a list"
        )
    grey = array.astype(np.float32)
    return grey * 255 if array.dtype.kind in "bf" and grey.max() <= 1 else grey


def prepare_image(
    source: str | Path | bytes | Image.Image | np.ndarray, max_pixels: int | None = MAX_PIXELS
) -> np.ndarray:
    """A picture (file, encoded bytes, PIL image or array) -> the 28x28 uint8 digit the model sees (times 1/255)."""
    if isinstance(source, Image.Image):
        grey = to_grey(source)
    elif isinstance(source, np.ndarray):
        grey = array_grey(source)
    else:
        grey = read_grey(source, max_pixels)
    return to_mnist(grey)


def to_tensor(digits: list[np.ndarray]) -> torch.Tensor:
    """28x28 uint8 digits -> float (N, 1, 28, 28) in [0, 1]: the data module's 1/255 scaling."""
    return torch.from_numpy(np.stack(digits)).unsqueeze(1).float().div_(255)


def to_pixels(picture: str | Path | bytes | Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """One picture -> its (1, 28, 28) float pixels in [0, 1]. A file, its encoded bytes, a PIL image or an
    array is prepared MNIST-style (`prepare_image`); a tensor is taken as a digit already prepared:
    28x28 or 1x28x28, uint8 (0-255) or floats in [0, 1] (pixels / 255)."""
    if isinstance(picture, (str, Path, bytes, Image.Image, np.ndarray)):
        return to_tensor([prepare_image(picture)])[0]
    if not isinstance(picture, torch.Tensor):
        raise ImageError(
            f"expected a picture (a file path, PIL image, numpy array or tensor), got {type(picture).__name__}"
        )
    if tuple(picture.shape) not in ((SIZE, SIZE), (1, SIZE, SIZE)):
        raise ImageError(
            f"expected a tensor of a prepared digit, (28, 28) or (1, 28, 28), or a batch of them, (N, 1, 28, 28); "
            f"got {tuple(picture.shape)} (a picture of another size: give it as a numpy array or PIL image)"
        )
    pixels = picture.detach().cpu().reshape(1, SIZE, SIZE)
    if pixels.dtype == torch.uint8:
        return pixels.float().div_(255)
    if not pixels.is_floating_point() or pixels.min() < 0 or pixels.max() > 1:
        raise ImageError(
            f"expected a tensor of pixels / 255 (floats in [0, 1]) or uint8 pixels, got {pixels.dtype} from "
            f"{float(pixels.min()):g} to {float(pixels.max()):g} (the model's own standardisation is applied to it)"
        )
    return pixels.float()
