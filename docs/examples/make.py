"""The pictures docs/predict.md reads: three MNIST test digits as a person's pictures, and a text file
named like a picture. Made again with:

    DIGITS_ZOO_DATA_DIR=../shared/data python docs/examples/make.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from digits_zoo.data.mnist import default_data_dir

HERE = Path(__file__).resolve().parent


def picture(digit: np.ndarray, size: tuple[int, int], box: tuple[int, int, int], ink, paper) -> Image.Image:
    """The 28x28 digit (0 background, 255 ink) enlarged to `box` = (left, top, side) on a page of
    `size`: each pixel mixes the paper's colour and the ink's by the digit's value."""
    left, top, side = box
    mask = Image.fromarray(digit).resize((side, side), Image.BICUBIC)
    page = Image.new("RGB", size, paper)
    page.paste(Image.new("RGB", (side, side), ink), (left, top), mask)
    return page


def main() -> None:
    from torchvision.datasets import MNIST

    test = MNIST(default_data_dir(), train=False, download=False)
    seven, two, one = (test.data[i].numpy() for i in (0, 1, 2))  # the test set's first three: a 7, a 2, a 1
    assert [int(test.targets[i]) for i in (0, 1, 2)] == [7, 2, 1]
    picture(seven, (480, 360), (140, 60, 220), (25, 25, 30), (250, 250, 248)).save(
        HERE / "seven_on_paper.jpg", quality=85
    )
    picture(two, (400, 400), (60, 110, 240), (30, 50, 160), (242, 234, 210)).save(HERE / "two_blue_ink.png")
    picture(one, (300, 300), (200, 30, 70), (255, 255, 255), (0, 0, 0)).save(HERE / "one_on_black.png")
    (HERE / "notes.png").write_text("not a picture: notes about the three above\n")


if __name__ == "__main__":
    main()
