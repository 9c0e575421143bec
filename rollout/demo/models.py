"""Three versions of a breast-cancer classifier, as a data scientist would register them.

- v1, the baseline: logistic regression on five hand-picked features (decent);
- v2, better: the same model on all thirty standardised features;
- v3, broken: trained with ``worst area`` divided by ten while production sends it unscaled, the
  classic unit mismatch, so its outputs and its accuracy shift.

Training and serving share one split: ``train`` rows fit the models, ``serve`` rows are the
traffic the demo replays (with their labels fed back later).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rollout.registry import MlflowRegistry

FEW_FEATURES = [
    "mean radius",
    "mean texture",
    "mean smoothness",
    "mean symmetry",
    "worst fractal dimension",
]
UNIT_BUG_COLUMN = "worst area"


@dataclass(frozen=True)
class DemoData:
    train_X: pd.DataFrame
    train_y: pd.Series
    serve_X: pd.DataFrame
    serve_y: pd.Series


def load_data(seed: int = 0) -> DemoData:
    frame = load_breast_cancer(as_frame=True)
    X, y = frame.data, frame.target
    train_X, serve_X, train_y, serve_y = train_test_split(
        X, y, test_size=0.5, random_state=seed, stratify=y
    )
    return DemoData(train_X, train_y, serve_X, serve_y)


def train_versions(data: DemoData) -> dict[str, Any]:
    """The three estimators, keyed by the role they play in the demo."""
    v1 = make_pipeline(
        ColumnTransformer([("few", "passthrough", FEW_FEATURES)]),
        StandardScaler(),
        LogisticRegression(C=0.05, max_iter=1000),
    ).fit(data.train_X, data.train_y)
    v2 = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        data.train_X, data.train_y
    )
    skewed = data.train_X.copy()
    skewed[UNIT_BUG_COLUMN] = skewed[UNIT_BUG_COLUMN] / 10.0
    v3 = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        skewed, data.train_y
    )
    return {"baseline": v1, "better": v2, "broken": v3}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def register_versions(
    registry: MlflowRegistry, model: str, data: DemoData, experiment: str = "rollout-demo"
) -> dict[str, str]:
    """Log and register v1..v3; returns role → version. Records each artifact digest."""
    experiment_id = registry.ensure_experiment(experiment)
    commit = git_commit()
    versions: dict[str, str] = {}
    for role, estimator in train_versions(data).items():
        accuracy = float(np.mean(estimator.predict(data.serve_X) == data.serve_y))
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"{model}-{role}"):
            if commit:
                mlflow.set_tag("mlflow.source.git.commit", commit)
            mlflow.log_param("role", role)
            mlflow.log_metric("holdout_accuracy", accuracy)
            signature = infer_signature(data.train_X, estimator.predict(data.train_X))
            info = mlflow.sklearn.log_model(
                estimator,
                name="model",
                signature=signature,
                registered_model_name=model,
            )
        version = str(info.registered_model_version)
        registry.record_digest(model, version)
        versions[role] = version
    return versions
