"""logger=[csv,mlflow]: one real run, read back from its MLflow store with MLflow's own client."""

import csv

import pytest
import yaml
from matplotlib.image import imread

from digits_zoo.training.run import train

pytest.importorskip("mlflow", reason="logger=mlflow needs MLflow: pip install -e '.[mlflow]' (part of .[dev])")
pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy: pip install -e '.[mlflow]'")

pytestmark = [
    pytest.mark.slow,  # MLflow's client and its SQLite store take longer to start than the training
    # MLflow 3.17's SQLite store on SQLAlchemy 2.1: inside MLflow, nothing to do here
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"),
]

PER_EPOCH = ("train/loss", "train/acc", "val/loss", "val/acc")
TEST_FIGURES = ("confusion_matrix", "confusion_matrix_normalized", "per_class_accuracy", "mistakes", "training_curves")


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A two-epoch run logging to CSV and MLflow; its run folder, output and MLflow run."""
    from mlflow import MlflowClient

    from tests.conftest import compose_tiny_run

    out = tmp_path_factory.mktemp("run")
    cfg = compose_tiny_run(tiny_data, out, "logger=[csv,mlflow]")
    output = train(cfg)
    client = MlflowClient(tracking_uri=cfg.logger.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name("digits_zoo")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    return out, output, client, mlflow_run


def test_the_store_and_its_artifacts_are_in_the_run_folder(run):
    out, _, _, mlflow_run = run
    assert (out / "mlflow" / "mlflow.db").is_file()
    assert mlflow_run.info.artifact_uri.removeprefix("file://").startswith(str(out / "mlflow" / "artifacts"))
    assert mlflow_run.info.run_name == "flatten_mlp" and mlflow_run.info.status == "FINISHED"


def test_params_are_the_hyperparameters_csv_has(run):
    out, _, _, mlflow_run = run
    hparams = yaml.safe_load((out / "csv" / "hparams.yaml").read_text())
    flat = {}  # nested ones, model_kwargs, as model_kwargs/hidden
    for key, value in hparams.items():
        flat.update({f"{key}/{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    assert mlflow_run.data.params == {key: str(value) for key, value in flat.items()}
    assert mlflow_run.data.params["model"] == "flatten_mlp" and mlflow_run.data.params["lr"] == "0.001"


@pytest.mark.parametrize("key", [*PER_EPOCH, "test/loss", "test/acc"])
def test_metrics_have_the_steps_and_values_csv_has(run, key):
    out, _, client, mlflow_run = run
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    expected = [(int(row["step"]), float(row[key])) for row in rows if row[key]]
    history = [(m.step, m.value) for m in client.get_metric_history(mlflow_run.info.run_id, key)]
    assert len(expected) == (2 if key in PER_EPOCH else 1)
    assert history == expected


def test_the_pictures_are_artifacts_and_valid_pngs(run, tmp_path):
    _, output, client, mlflow_run = run
    run_id = mlflow_run.info.run_id
    steps = output["trainer"].global_step
    expected = {f"val/confusion_matrix_step{epoch:04d}.png" for epoch in (0, 1)}  # one per epoch
    expected |= {f"test/{name}_step{steps:04d}.png" for name in TEST_FIGURES}
    listed = {item.path for folder in ("val", "test") for item in client.list_artifacts(run_id, folder)}
    assert listed == expected
    for path in sorted(expected):
        local = client.download_artifacts(run_id, path, str(tmp_path))
        with open(local, "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n", path
        image = imread(local)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0, path
