"""A version's training reference, found in a real SQLite MLflow registry: a dataset logged with
``mlflow.log_input``, a sample beside the model, or a clear why-not; the command too."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import MODEL, DemoHome
from rollout.registry import MlflowRegistry, find_reference, read_table

CODE = """
import mlflow


class Zero(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


mlflow.models.set_model(Zero())
"""


def register(home: DemoHome, tmp_path: Path, name: str, *, dataset: Path | None = None,
             beside: Path | None = None) -> str:  # fmt: skip
    """A version of the demo model; its run logs ``dataset`` with mlflow.log_input (context
    training) and/or ``beside`` as an artifact of the run's model directory."""
    import mlflow

    code = tmp_path / f"{name}.py"
    code.write_text(CODE)
    mlflow.set_tracking_uri(home.settings.registry_uri)
    mlflow.set_registry_uri(home.settings.registry_uri)
    experiment = mlflow.create_experiment(name, artifact_location=(tmp_path / name).as_uri())
    with mlflow.start_run(experiment_id=experiment):
        if dataset is not None:
            frame = pd.read_csv(dataset)
            mlflow.log_input(
                mlflow.data.from_pandas(frame, source=str(dataset), name="train"),
                context="training",
            )
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), registered_model_name=MODEL
        )
        if beside is not None:
            mlflow.log_artifact(str(beside), artifact_path="model")
    return str(info.registered_model_version)


def test_a_logged_dataset_a_sample_beside_the_model_or_why_not(
    home: DemoHome, tmp_path: Path
) -> None:
    train = home.data.serve_X.head(300)
    train_csv = tmp_path / "train.csv"
    train.to_csv(train_csv, index=False)
    sample = tmp_path / "reference.parquet"
    train.head(120).to_parquet(sample)
    registry = MlflowRegistry(home.settings.registry_uri, home.settings.artifact_root)

    logged = register(home, tmp_path, "logged", dataset=train_csv)
    found = find_reference(registry, MODEL, logged)
    assert found.found and found.source == f"mlflow.log_input dataset 'train': {train_csv}"
    assert found.frame is not None
    pd.testing.assert_frame_equal(found.frame, train.reset_index(drop=True), check_dtype=False)

    beside = register(home, tmp_path, "beside", beside=sample)
    found = find_reference(registry, MODEL, beside)
    assert found.source == "run artifact model/reference.parquet"
    assert found.frame is not None and len(found.frame) == 120

    # the logged dataset's file is gone: the sample beside the model is used, the reason kept
    both = register(home, tmp_path, "both", dataset=train_csv, beside=sample)
    moved = tmp_path / "moved.csv"
    train_csv.rename(moved)
    assert find_reference(registry, MODEL, both).source == "run artifact model/reference.parquet"
    moved.rename(train_csv)

    none = find_reference(registry, MODEL, home.versions["baseline"])
    assert not none.found and none.why == (
        f"no training reference for v{home.versions['baseline']}: no dataset logged with "
        "mlflow.log_input; no readable reference.parquet or reference.csv beside the model"
    )


def test_a_reference_is_read_up_to_its_bound(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(25_000), "y": [1.5] * 25_000})
    frame.to_csv(tmp_path / "big.csv", index=False)
    frame.to_parquet(tmp_path / "big.parquet")
    assert len(read_table(tmp_path / "big.csv", max_rows=1_000)) == 1_000
    head = read_table(tmp_path / "big.parquet", max_rows=12_345)
    assert len(head) == 12_345 and head["x"].tolist() == list(range(12_345))
    (tmp_path / "notes.txt").write_text("x")
    try:
        read_table(tmp_path / "notes.txt")
    except ValueError as exc:
        assert "must be .csv or .parquet" in str(exc)
    else:
        raise AssertionError("a .txt reference was read")


def test_the_command_says_where_or_why_not(home: DemoHome, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "rollout", "--home", str(home.settings.home)]
    base += ["--registry-uri", home.settings.registry_uri, "--store-url", home.settings.store_url]
    missing = subprocess.run(
        [*base, "reference", MODEL, home.versions["baseline"]], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "no training reference" in missing.stdout and "mlflow.log_input(" in missing.stdout
    sample = tmp_path / "reference.csv"
    home.data.serve_X.head(50).to_csv(sample, index=False)
    version = register(home, tmp_path, "cli", beside=sample)
    shown = subprocess.run(
        [*base, "reference", MODEL, version, "--json"], capture_output=True, text=True, check=True
    )
    data = json.loads(shown.stdout)
    assert (data["found"], data["rows"], data["source"]) == (
        True,
        50,
        "run artifact model/reference.csv",
    )
    assert "mean radius" in data["columns"]
