"""The seed itself, for timing: its Keras Flatten model trained and evaluated as the notebook does.

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    DIGITS_ZOO_DATA_DIR=/path/to/data /usr/bin/time -f "wall %e s" /tmp/tf/bin/python benchmarks/seed_keras.py

TensorFlow is not a dependency of digits_zoo; this script needs only it and numpy. It reads the
same raw MNIST files (keras.datasets would download them), then runs the seed's code: pixels / 255,
Flatten, Dense(100, relu), Dense(10, sigmoid), Adam, sparse categorical cross-entropy, batch 32,
5 epochs, evaluate on the 10,000 test images. Compare its wall time with
`python train.py experiment=seed_parity model=flatten_mlp`.
"""

import os
import time
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    start = time.perf_counter()
    from tensorflow import keras

    raw = Path(os.environ.get("DIGITS_ZOO_DATA_DIR") or "data") / "MNIST" / "raw"
    x_train, y_train = read_idx(raw / "train-images-idx3-ubyte") / 255, read_idx(raw / "train-labels-idx1-ubyte")
    x_test, y_test = read_idx(raw / "t10k-images-idx3-ubyte") / 255, read_idx(raw / "t10k-labels-idx1-ubyte")
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ready = time.perf_counter()
    model.fit(x_train, y_train, epochs=5, verbose=2)
    trained = time.perf_counter()
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(
        f"keras {keras.__version__}: test accuracy {100 * accuracy:.2f}%, test loss {loss:.4f} | "
        f"start-up {ready - start:.1f} s, fit {trained - ready:.1f} s ({(trained - ready) / 5:.2f} s/epoch), "
        f"evaluate {time.perf_counter() - trained:.1f} s"
    )


if __name__ == "__main__":
    main()
