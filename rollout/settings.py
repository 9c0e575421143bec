"""Where things live: the data directory, the MLflow registry URI and the store URL.

The embedded default needs no server: everything sits under one data directory
(``$ROLLOUT_HOME``, else ``./.rollout``)::

    .rollout/mlflow.db      MLflow tracking + model registry (SQLite)
    .rollout/artifacts/     MLflow artifacts (model directories)
    .rollout/rollout.db     the rollout store (plans, prediction log, rollouts, releases)
    .rollout/environments.yaml  optional: environments and approval policies
                                (:mod:`rollout.environments`; or ``$ROLLOUT_ENVIRONMENTS_FILE``)

``--registry-uri http://...`` points at an existing ``mlflow server`` and ``--store-url
postgresql://...`` at a PostgreSQL store; the environment variables ``ROLLOUT_REGISTRY_URI`` and
``ROLLOUT_STORE_URL`` do the same for every process (router, manager, CLI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    registry_uri: str
    store_url: str
    artifact_root: str
    environments_file: Path | None = None  # environments and approval policies (YAML)

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        registry_uri: str | None = None,
        store_url: str | None = None,
    ) -> Settings:
        """Explicit arguments win over environment variables, which win over the defaults."""
        home_path = Path(home or os.environ.get("ROLLOUT_HOME") or ".rollout").resolve()
        registry = (
            registry_uri
            or os.environ.get("ROLLOUT_REGISTRY_URI")
            or f"sqlite:///{home_path / 'mlflow.db'}"
        )
        store = (
            store_url
            or os.environ.get("ROLLOUT_STORE_URL")
            or f"sqlite:///{home_path / 'rollout.db'}"
        )
        artifacts = os.environ.get("ROLLOUT_ARTIFACT_ROOT") or (home_path / "artifacts").as_uri()
        env_file = os.environ.get("ROLLOUT_ENVIRONMENTS_FILE")
        environments = Path(env_file) if env_file else home_path / "environments.yaml"
        return cls(
            home=home_path,
            registry_uri=registry,
            store_url=store,
            artifact_root=artifacts,
            environments_file=environments if env_file or environments.exists() else None,
        )

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process use the same places."""
        out = {
            "ROLLOUT_HOME": str(self.home),
            "ROLLOUT_REGISTRY_URI": self.registry_uri,
            "ROLLOUT_STORE_URL": self.store_url,
            "ROLLOUT_ARTIFACT_ROOT": self.artifact_root,
        }
        if self.environments_file is not None:
            out["ROLLOUT_ENVIRONMENTS_FILE"] = str(self.environments_file)
        return out
