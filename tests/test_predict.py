"""`python -m digits_zoo.predict`: MNIST-style preparation of people's pictures, and the command.

The fast tier draws its own pictures and uses a barely trained model; the real-data tier trains
`flatten_mlp` on MNIST and checks that test digits dressed up as photos keep their labels.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from digits_zoo import list_pretrained
from digits_zoo.data.mnist import MNISTDataModule
from digits_zoo.data.preprocess import ImageError, prepare_image, to_tensor
from digits_zoo.models.pretrained import manifest
from digits_zoo.predict import load_model, load_trained, main, resolve_checkpoint
from digits_zoo.training.module import DigitClassifier
from tests.conftest import ROOT

STROKES = [(400, 80), (520, 80), (450, 330)]  # a "7", well off the centre of a 640x480 canvas


def drawing(ink: int = 255, paper: int = 0, texture: int = 0, size=(640, 480), strokes=STROKES, width=22) -> np.ndarray:
    """A greyscale picture of a thick polyline; `texture` adds that much uniform noise to it all."""
    image = Image.new("L", size, paper)
    ImageDraw.Draw(image).line(strokes, fill=ink, width=width, joint="curve")
    grey = np.asarray(image, dtype=np.int16)
    if texture:
        grey = grey + np.random.default_rng(0).integers(-texture, texture + 1, size=grey.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def ink_box(digit: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    mass = digit.astype(np.float64)
    index = np.arange(digit.shape[0])
    return (mass.sum(1) * index).sum() / mass.sum(), (mass.sum(0) * index).sum() / mass.sum()


# ---------------------------------------------------------------- preprocessing (fast tier)


@pytest.mark.parametrize(
    "strokes, size",
    [
        (STROKES, (640, 480)),  # tall, asymmetric: centre of mass is not the box centre
        ([(30, 40), (250, 60)], (300, 900)),  # wide, in a corner of a tall canvas
        ([(700, 500), (705, 505)], (800, 600)),  # a small dot, near the bottom-right
    ],
)
def test_an_off_centre_drawing_is_boxed_in_20x20_and_centred_by_mass(strokes, size):
    digit = prepare_image(Image.fromarray(drawing(strokes=strokes, size=size)))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    height, width = ink_box(digit)
    assert max(height, width) <= 20 and max(height, width) >= 19  # scaled to fill the 20x20 box
    cy, cx = centre_of_mass(digit)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1, (cy, cx)


def test_dark_ink_on_paper_and_light_ink_on_black_give_the_same_digit():
    light_on_dark = prepare_image(Image.fromarray(drawing(ink=250, paper=10)))
    dark_on_paper = prepare_image(Image.fromarray(drawing(ink=40, paper=225, texture=8)))  # textured paper
    difference = np.abs(light_on_dark.astype(int) - dark_on_paper)
    assert difference.max() <= 24 and difference.mean() <= 2  # the texture on the ink itself remains
    assert ink_box(dark_on_paper) == ink_box(light_on_dark)  # the texture did not widen the box


def test_colour_and_transparent_pictures_give_the_same_digit():
    reference = prepare_image(Image.fromarray(drawing()))
    mask = Image.fromarray(drawing())
    blue_on_cream = Image.composite(
        Image.new("RGB", mask.size, (20, 30, 170)), Image.new("RGB", mask.size, (250, 240, 205)), mask
    )
    black_on_clear = Image.new("RGBA", mask.size, (0, 0, 0, 0))
    black_on_clear.putalpha(mask)  # a drawing app's export: black strokes, transparent canvas
    white_on_clear = Image.new("RGBA", mask.size, (255, 255, 255, 0))
    white_on_clear.putalpha(mask)  # white strokes on a transparent canvas (dark-mode apps)
    opaque_rgba = blue_on_cream.convert("RGBA")
    for picture in (blue_on_cream, black_on_clear, white_on_clear, opaque_rgba):
        digit = prepare_image(picture)
        assert np.abs(digit.astype(int) - reference).max() <= 16, picture.mode


def test_a_blank_picture_is_an_error_not_a_digit():
    with pytest.raises(ImageError, match="no digit"):
        prepare_image(Image.new("L", (100, 100), 200))


def soft_seven(side: int = 280) -> Image.Image:
    """An MNIST-like 7: light strokes on black, drawn at 28x28, blurred and enlarged (soft edges)."""
    small = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(small).line([(7, 6), (20, 6), (12, 23)], fill=255, width=3)
    return small.filter(ImageFilter.GaussianBlur(0.7)).resize((side, side), Image.Resampling.BICUBIC)


def encoded(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def test_a_picture_with_a_transparent_key_colour_is_read_in_its_own_colours():
    # A key colour (one palette entry, grey level or colour made transparent, as in GIFs and
    # palette PNGs) is the paper: the soft edges blend into it, whatever the page behind it shows.
    seven = soft_seven()
    on_paper = ImageOps.invert(seven)
    reds = Image.merge("RGB", (ImageOps.invert(seven), on_paper, on_paper))  # red ink on white, white keyed
    strokes = np.asarray(seven) > 127
    hard = Image.fromarray(np.uint8(strokes)).convert("P")  # strokes are index 1...
    hard.putpalette([0, 0, 0] * 2)  # ...as black as index 0, the transparent background
    keyed = {
        "palette, black keyed": (encoded(seven.convert("P"), transparency=0), seven),
        "palette, white keyed": (encoded(on_paper.convert("P"), transparency=255), seven),
        "grey, black keyed": (encoded(seven, transparency=0), seven),
        "colour, white keyed": (encoded(reds, transparency=(255, 255, 255)), seven),
        # unless the strokes are in the key colour too: then the transparency shows them
        "strokes in the key colour": (encoded(hard, transparency=0), Image.fromarray(np.uint8(strokes) * 255)),
    }
    for name, (picture, plain) in keyed.items():
        assert np.abs(prepare_image(picture).astype(int) - prepare_image(plain)).max() <= 2, name


@pytest.mark.parametrize("top", [1.0, 255.0])
def test_a_float_tiff_in_0_1_or_0_255_reads_like_its_8_bit_picture(top, tmp_path):
    seven = soft_seven()
    path = tmp_path / "seven.tif"
    Image.fromarray(np.asarray(seven, dtype=np.float32) * (top / 255)).save(path)  # mode "F"
    assert np.abs(prepare_image(path).astype(int) - prepare_image(seven)).max() <= 1


def large_seven(width: int, height: int, mode: str = "RGBA") -> Image.Image:
    """A soft black 7 across a canvas of `width` x `height` pixels, transparent ("RGBA") or white
    ("L"): a picture that costs the most to prepare for its size, in a small PNG or JPEG."""
    canvas = Image.new(mode, (width, height), 0 if mode == "RGBA" else 255)
    side = min(width, height) * 3 // 4
    canvas.paste("black", ((width - side) // 2, (height - side) // 2), soft_seven(side))
    return canvas


def test_a_large_picture_is_read_like_the_same_picture_small(tmp_path):
    # shrunk before it is prepared: a 12 MP PNG by box averaging, a 24 MP JPEG also as it is decoded
    small = prepare_image(large_seven(800, 600))
    large_seven(4000, 3000).save(tmp_path / "large.png")
    large_seven(6000, 4000, "L").save(tmp_path / "large.jpg")
    for name in ("large.png", "large.jpg"):
        assert np.abs(prepare_image(tmp_path / name).astype(int) - small).max() <= 24, name


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak memory from /proc (Linux)")
def test_preparing_a_large_picture_takes_bounded_memory(tmp_path):
    # a 16-megapixel transparent PNG (85 kB): decoded, it is 64 MB of RGBA; at full size in float32
    # copies, preparing it took over 500 MB. In a fresh process, the peak memory the preparation adds:
    large_seven(4096, 4096).save(tmp_path / "large.png")
    script = """if True:
        import sys
        from digits_zoo.data.preprocess import prepare_image
        def megabytes(key):
            return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) // 1024
        before = megabytes("VmRSS:")
        prepare_image(sys.argv[1])
        print(megabytes("VmHWM:") - before)"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "large.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 200  # decoded 64 MB, premultiplied for shrinking 64 MB, then 1 MP floats


def test_a_picture_that_would_decode_too_large_is_one_line_and_the_others_are_read(
    checkpoint, pictures, tmp_path, capsys
):
    scan = tmp_path / "scan.png"
    Image.new("L", (8000, 6400), 255).save(scan)  # 51 megapixels in 60 kB
    assert main([str(scan), str(pictures["seven.png"]), "--model", str(checkpoint)]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"error: {scan}: too large: 8000x6400 pixels, at most 50,000,000 are read; scale it down\n"
    assert captured.out.splitlines()[1].startswith(f"{pictures['seven.png']}: ")


def test_a_picture_over_pillows_limit_is_refused_without_a_warning(monkeypatch, recwarn):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # (89 MP by default: slow to make in a test)
    with pytest.raises(
        ImageError, match=r"too large to decode safely \(Image size \(1600 pixels\) exceeds limit of 1000 "
    ):
        prepare_image(encoded(Image.new("L", (40, 40))))
    assert not recwarn.list  # (Pillow's warning would be printed)


def test_tensor_is_the_data_modules_1_over_255_scaling():
    digit = prepare_image(Image.fromarray(drawing()))
    x = to_tensor([digit, digit])
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x[0, 0], torch.from_numpy(digit).float() / 255)


# ---------------------------------------------------------------- the command (fast tier)


def save_checkpoint(path: Path, data_dir: Path, model: str = "flatten_mlp") -> Path:
    """A barely trained model (one optimiser step on the tiny data) saved as Lightning saves it."""
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(DigitClassifier(model=model), datamodule=MNISTDataModule(data_dir, download=False, val_size=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.ckpt", tiny_data)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """Good pictures (PNG and JPEG) and broken ones: text named .png, an empty file, a cut PNG."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = {name: folder / name for name in ("seven.png", "seven.jpg", "x.png", "empty.png", "truncated.png")}
    Image.fromarray(drawing(ink=30, paper=235)).save(paths["seven.png"])
    Image.fromarray(drawing()).convert("RGB").save(paths["seven.jpg"], quality=85)
    paths["x.png"].write_text("this is not a picture\n")
    paths["empty.png"].touch()
    png = paths["seven.png"].read_bytes()
    paths["truncated.png"].write_bytes(png[: len(png) // 2])
    return paths


@pytest.mark.slow  # a real predict process
def test_broken_files_are_one_line_each_and_the_good_one_is_still_predicted(checkpoint, pictures):
    broken = [pictures[name] for name in ("x.png", "empty.png", "truncated.png")]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digits_zoo.predict",
            str(pictures["seven.png"]),
            *map(str, broken),
            "--model",
            str(checkpoint),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and all(any(line.startswith(f"error: {path}: ") for line in errors) for path in broken), (
        result.stderr
    )
    assert "truncated or corrupt" in result.stderr and "empty file" in result.stderr and "not an image" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("probabilities: sigmoid")  # says which activation produced them
    assert len(lines) == 2 and lines[1].startswith(f"{pictures['seven.png']}: ") and "top 3: " in lines[1]


def test_json_is_all_of_stdout_with_a_result_or_an_error_per_file(checkpoint, pictures, capsys):
    files = [str(pictures["seven.png"]), str(pictures["seven.jpg"]), str(pictures["x.png"])]
    assert main([*files, "--model", str(checkpoint), "--json"]) == 1
    out = capsys.readouterr().out
    results = json.loads(out)  # the whole of stdout
    assert [r["file"] for r in results] == files
    for good in results[:2]:
        assert (
            set(good) == {"file", "digit", "class", "probability", "top3", "activation"}
            and good["activation"] == "sigmoid"
        )
        assert good["class"] == torchvision.datasets.MNIST.classes[good["digit"]]  # e.g. "7 - seven"
        assert good["digit"] == good["top3"][0]["digit"] and good["probability"] == good["top3"][0]["probability"]
        assert len(good["top3"]) == 3 and len({t["digit"] for t in good["top3"]}) == 3
        probabilities = [t["probability"] for t in good["top3"]]
        assert probabilities == sorted(probabilities, reverse=True) and all(0 <= p <= 1 for p in probabilities)
    assert set(results[2]) == {"file", "error"}


def test_probabilities_are_the_models_own_from_one_batch(checkpoint, pictures, capsys):
    files = [str(pictures["seven.png"]), str(pictures["seven.jpg"])]
    assert main([*files, "--model", str(checkpoint), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    model = load_model(checkpoint)
    with torch.inference_mode():
        probabilities = torch.sigmoid(model(to_tensor([prepare_image(f) for f in files])))  # not renormalised
    for result, expected in zip(results, probabilities):
        assert result["probability"] == pytest.approx(float(expected.max()), abs=1e-6)


def test_save_input_writes_the_28x28_the_model_saw(checkpoint, pictures, tmp_path, capsys):
    out = tmp_path / "seen"
    assert (
        main(
            [
                str(pictures["seven.png"]),
                str(pictures["seven.jpg"]),
                "--model",
                str(checkpoint),
                "--save-input",
                str(out),
            ]
        )
        == 0
    )
    # same stem twice: the second is numbered rather than overwriting the first
    saved = {path.name: path for path in out.iterdir()}
    assert set(saved) == {"seven.28x28.png", "seven-2.28x28.png"}
    for name, source in (("seven.28x28.png", "seven.png"), ("seven-2.28x28.png", "seven.jpg")):
        with Image.open(saved[name]) as image:
            assert image.format == "PNG" and image.size == (28, 28) and image.mode == "L"
            assert np.array_equal(np.asarray(image), prepare_image(pictures[source]))


def test_a_run_folder_uses_its_best_checkpoint_else_last(tiny_data, checkpoint, pictures, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(checkpoint.read_bytes())
    (run / "results.json").write_text(json.dumps({"best_checkpoint": None}))
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    assert main([str(pictures["seven.png"]), "--model", str(run)]) == 0
    assert capsys.readouterr().out.startswith("probabilities: sigmoid")

    # a best checkpoint (here a softmax model) wins over last.ckpt, even after the folder moved
    best = save_checkpoint(run / "checkpoints" / "best-epoch00.ckpt", tiny_data, model="softmax_mlp")
    (run / "results.json").write_text(json.dumps({"best_checkpoint": f"/elsewhere/checkpoints/{best.name}"}))
    assert resolve_checkpoint(run) == best
    assert main([str(pictures["seven.png"]), "--model", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["activation"] == "softmax"


def test_a_run_trained_on_standardized_pixels_gets_them_standardized(standardized_run, pictures, capsys):
    assert main([str(pictures["seven.png"]), "--model", str(standardized_run), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    trained = load_trained(standardized_run)
    mean, std = trained.normalization  # recorded in the checkpoint by the data module
    pixels = to_tensor([prepare_image(pictures["seven.png"])])
    with torch.no_grad():
        expected = trained.network.probabilities(trained.network((pixels - mean) / std))[0]
    assert result["probability"] == round(float(expected.max()), 6)
    assert result["digit"] == int(expected.argmax())


def test_without_a_model_the_default_shipped_one_reads_and_says_so(pictures, capsys):
    assert main([str(pictures["seven.png"]), "--json"]) == 0
    captured = capsys.readouterr()
    info = manifest()["robust_vgg"]
    assert captured.err == (
        f"model: robust_vgg, the default shipped model ({100 * info['test_acc']:.2f}% on the MNIST test set, "
        f"{100 * info['mnist_c_mean']:.2f}% on MNIST-C); choose another with --model\n"
    )
    assert json.loads(captured.out)[0]["activation"] == "softmax"


def test_a_clothing_model_names_its_classes_not_digits(fashion_run, pictures, capsys):
    classes = torchvision.datasets.FashionMNIST.classes
    run, _ = fashion_run
    assert load_trained(run).dataset == "FashionMNIST"
    assert main([str(pictures["seven.png"]), "--model", str(run)]) == 0
    _probabilities, line = capsys.readouterr().out.strip().splitlines()
    read, top = line.removeprefix(f"{pictures['seven.png']}: ").split(" (probability ")[0], line.split("top 3: ")[1]
    assert read in classes and all(entry.rsplit(": ", 1)[0] in classes for entry in top.split(", "))
    assert main([str(pictures["seven.png"]), "--model", str(run), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["class"] == classes[result["digit"]] and result["class"] == read
    assert [t["class"] for t in result["top3"]] == [classes[t["digit"]] for t in result["top3"]]


@pytest.mark.parametrize("source", ["missing.ckpt", "not_a_checkpoint.ckpt", "empty_folder"])
def test_an_unusable_model_is_one_line_and_exit_code_2(source, pictures, tmp_path, capsys):
    (tmp_path / "not_a_checkpoint.ckpt").write_text("hello")
    (tmp_path / "empty_folder").mkdir()
    assert main([str(pictures["seven.png"]), "--model", str(tmp_path / source)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / source}")


def test_a_folder_gives_its_pictures_and_a_quoted_pattern_its_files(pictures, tmp_path, monkeypatch, capsys):
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "c.png"):
        (scans / name).write_bytes(pictures["seven.png"].read_bytes())
    (scans / "notes.txt").write_text("not a picture")
    (scans / "sub" / "d.png").write_bytes(pictures["seven.png"].read_bytes())
    monkeypatch.chdir(tmp_path)

    assert main(["scans", "--model", "flatten_mlp", "--json"]) == 0  # its pictures, sorted; not sub/
    assert [r["file"] for r in json.loads(capsys.readouterr().out)] == ["scans/a.JPG", "scans/b.png", "scans/c.png"]
    assert main(["scans/*.png", "scans/**/d.png", "--model", "flatten_mlp"]) == 0  # as Windows shells pass them
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines[1:]] == ["scans/b.png", "scans/c.png", "scans/sub/d.png"]

    # a pattern without files, or a folder without pictures: one line each, the others still read, exit code 1
    assert main(["scans/*.gif", "scans/c.png", "--model", "flatten_mlp"]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["error: scans/*.gif: no file matches this pattern"]
    assert captured.out.splitlines()[1].startswith("scans/c.png: ")
    assert main([str(tmp_path), "--model", "flatten_mlp"]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}: a folder without pictures (.png, .jpg, ")


# ---------------------------------------------------------------- real-data tier


def as_photo(digit: np.ndarray, variant: int, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit (28x28 in [0, 1]) as a person's picture: enlarged, off-centre on a larger
    canvas, as white-on-black, black-on-white, or blue/black ink on cream paper with texture."""
    side = int(rng.integers(200, 300))
    big = Image.fromarray(np.uint8(np.rint(digit * 255))).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (int(rng.integers(side + 80, 700)), int(rng.integers(side + 60, 600))), 0)
    canvas.paste(big, (int(rng.integers(0, canvas.width - side)), int(rng.integers(0, canvas.height - side))))
    ink = np.asarray(canvas, dtype=np.float32)[..., None] / 255
    if variant == 0:
        return canvas  # light ink on dark, as MNIST
    if variant == 1:
        return Image.fromarray(np.uint8(255 - ink[..., 0] * 255))  # dark ink on white
    paper = np.array([245, 238, 210], np.float32) + rng.normal(0, 4, size=(*ink.shape[:2], 3))
    pen = np.array([25, 35, 150] if variant == 2 else [20, 20, 20], np.float32)
    return Image.fromarray(np.uint8(np.clip(paper * (1 - ink) + pen * ink, 0, 255)))


@pytest.mark.real_data
def test_mnist_test_digits_as_photos_keep_their_labels(real_data_dir, make_cfg, tmp_path, capsys):
    from digits_zoo.training.run import train

    # make_cfg holds out 200 images, so the run folder's results.json names a best checkpoint
    output = train(make_cfg("model=flatten_mlp", "trainer.max_epochs=2", data_dir=real_data_dir))
    run = tmp_path / "run"  # make_cfg's run folder
    assert resolve_checkpoint(run) == Path(output["metrics"]["best_checkpoint"])
    model = load_model(run)

    datamodule = MNISTDataModule(real_data_dir, download=False)
    datamodule.setup()
    images, labels = datamodule.splits["test"]
    with torch.inference_mode():
        right = (model(images[:200]).argmax(1) == labels[:200]).nonzero().flatten()[:30]
    assert len(right) == 30

    rng = np.random.default_rng(0)
    files, expected = [], []
    for n, i in enumerate(right.tolist()):
        photo = as_photo(images[i, 0].numpy(), variant=n % 4, rng=rng)
        path = tmp_path / f"digit{n:02d}.{'jpg' if n % 2 else 'png'}"
        photo.save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
        files.append(str(path))
        expected.append(int(labels[i]))
    capsys.readouterr()
    assert main([*files, "--model", str(run), "--json"]) == 0
    predicted = [result.get("digit") for result in json.loads(capsys.readouterr().out)]
    share = np.mean(np.array(predicted) == np.array(expected))
    with capsys.disabled():
        print(f"\nphotos of MNIST test digits predicted right: {share:.0%} of {len(files)}")
    assert share >= 0.9, list(zip(files, expected, predicted))


def test_a_mistyped_model_name_says_which_shipped_one_was_meant(pictures, capsys):
    assert main([str(pictures["seven.png"]), "--model", "vgg"]) == 2  # (the model could not be loaded)
    assert capsys.readouterr().err == (
        "error: vgg: no such checkpoint file, run folder or shipped model; did you mean vgg_bn? "
        f"shipped: {', '.join(list_pretrained())}\n"
    )
