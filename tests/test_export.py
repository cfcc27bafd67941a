"""`python -m digits_zoo.export SOURCE --format onnx`: one ONNX file, checked against torch."""

import json
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import digits_zoo.export as export_module
from digits_zoo import create_model, list_models, list_pretrained
from digits_zoo.export import export_onnx, main, parity, write_onnx
from digits_zoo.models.pretrained import manifest
from digits_zoo.predict import load_trained
from tests.conftest import ROOT


def run_onnx(path, images: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})[0]


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_to_one_file_that_agrees_with_torch(name, tmp_path):
    network = create_model(name).eval()  # whether it exports is the network's: no weights need ship
    out = tmp_path / "exported" / f"{name}.onnx"
    out.parent.mkdir()
    write_onnx(network, out)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # self-contained: no .data beside it
    check = parity(out, network, torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0)), None)
    assert check["within_tolerance"] and check["same_digits"] == check["images"] == 300
    assert check["max_difference"] <= export_module.ATOL
    for batch in (1, 7):  # the batch size is dynamic
        images = torch.rand(batch, 1, 28, 28)
        np.testing.assert_allclose(run_onnx(out, images), network(images).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_a_shipped_model_exports_by_name_with_its_record_in_the_metadata(tiny_data, tmp_path):
    out = tmp_path / "lenet5.onnx"
    check = export_onnx("lenet5", out, data_dir=tiny_data)
    assert check["within_tolerance"] and check["same_digits"] == check["images"] == 300
    network = load_trained("lenet5").network
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["digits_zoo.model"] == "lenet5" and meta["digits_zoo.output_activation"] == network.output_activation
    assert meta["digits_zoo.dataset"] == "MNIST"
    assert len(json.loads(meta["digits_zoo.classes"])) == 10


def test_a_standardized_run_exports_with_its_normalization_inside(standardized_run, tiny_data, tmp_path):
    out = tmp_path / "run.onnx"
    export_onnx(str(standardized_run), out, data_dir=tiny_data)
    trained = load_trained(standardized_run)
    mean, std = trained.normalization
    pixels = torch.rand(5, 1, 28, 28)  # what people give the file: pixels / 255
    expected = trained.network((pixels - mean) / std).detach().numpy()
    np.testing.assert_allclose(run_onnx(out, pixels), expected, atol=1e-4, rtol=1e-4)


def test_a_fashion_run_is_checked_on_its_own_test_images_and_says_which(fashion_run, tmp_path, capsys):
    run, data = fashion_run
    out = tmp_path / "fashion.onnx"
    assert main([str(run), "--out", str(out), "--data-dir", str(data)]) == 0
    wrote, accuracy = capsys.readouterr().out.strip().splitlines()
    assert "onnxruntime against torch on the 250 FashionMNIST test images" in wrote  # not MNIST's 300
    assert accuracy.startswith("FashionMNIST test accuracy: ")
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["digits_zoo.dataset"] == "FashionMNIST" and json.loads(meta["digits_zoo.classes"])[0] == "T-shirt/top"


def test_a_disagreeing_export_is_refused_and_what_was_there_is_kept(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "lenet5.onnx"
    out.write_text("an earlier export")
    monkeypatch.setattr(export_module, "ATOL", -1.0)  # no difference is small enough
    assert main(["lenet5", "--out", str(out), "--data-dir", str(tiny_data)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        line.startswith("error: onnxruntime disagrees with torch on the 300 MNIST test images")
        and "nothing was written" in line
    )
    assert out.read_text() == "an earlier export" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_the_command_says_what_it_wrote_and_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DIGITS_ZOO_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no data here: the check runs on seeded random images
    assert main(["single_dense"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "wrote exports/single_dense.onnx (0.03 MB); onnxruntime against torch on 1,000 random images: largest logit "
        "difference"
    )
    # in a folder of its own (which git ignores in a checkout), not among the files of the folder it ran in
    assert [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")] == ["exports", "exports/single_dense.onnx"]
    assert "/exports/" in (ROOT / ".gitignore").read_text().splitlines()
    assert main(["lenet5"]) == 0  # the folder is there now
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["lenet5.onnx", "single_dense.onnx"]


def test_an_export_refused_by_default_leaves_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(export_module, "ATOL", -1.0)  # no difference is small enough
    assert main(["single_dense"]) == 1
    assert "nothing was written" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_without_the_export_extra_it_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    assert main(["lenet5", "--out", str(tmp_path / "x.onnx")]) == 1
    assert (
        capsys.readouterr().err
        == 'error: ONNX export needs the export extra (onnxscript is missing): pip install -e ".[export]"\n'
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_source_is_one_line(tmp_path, capsys):
    assert main(["no_such_model", "--out", str(tmp_path / "x.onnx")]) == 1
    assert capsys.readouterr().err == (
        f"error: no_such_model: no such checkpoint file, run folder or shipped model; shipped: {', '.join(list_pretrained())}\n"
    )


@pytest.mark.real_data
def test_the_exported_strong_model_keeps_its_test_accuracy_under_onnxruntime(real_data_dir, tmp_path):
    check = export_onnx("vgg_bn", tmp_path / "vgg_bn.onnx", data_dir=real_data_dir)
    assert check["images"] == 10_000 and check["same_digits"] == 10_000
    assert check["onnxruntime_acc"] == check["torch_acc"] == pytest.approx(manifest()["vgg_bn"]["test_acc"], abs=1e-4)
