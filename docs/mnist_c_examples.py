"""Draw docs/images/mnist_c.png: the first ten MNIST test digits, clean and through each corruption of the
robustness benchmark (digits_zoo.data.corruptions).

    DIGITS_ZOO_DATA_DIR=../shared/data python docs/mnist_c_examples.py
"""

from pathlib import Path

from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.data.mnist_c import default_cache_dir, test_sets
from digits_zoo.training.plots import save_figure
from digits_zoo.training.robustness import examples_figure

OUT = Path(__file__).resolve().parent / "images" / "mnist_c.png"

if __name__ == "__main__":
    images, _ = MNISTDataModule(download=False).read_split(train=False)
    save_figure(examples_figure(images, test_sets(images, None, 10, default_cache_dir())), OUT)
    print(f"wrote {OUT}")
