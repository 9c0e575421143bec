"""Where things live: the data directory, the MLflow registry URI, the store URL, artifacts.

Every process (router, manager, API, CLI) resolves them the same way, once, at its start:
an explicit value wins over the environment variable, which wins over the embedded default
under one data directory (``$ROLLOUT_HOME``, else ``./.rollout``)::

    .rollout/mlflow.db      MLflow tracking + model registry (SQLite)
    .rollout/artifacts/     MLflow artifacts (model directories)
    .rollout/rollout.db     the rollout store (plans, prediction log, rollouts, releases)

``ROLLOUT_REGISTRY_URI`` (e.g. ``http://mlflow:5000``), ``ROLLOUT_STORE_URL`` (e.g.
``postgresql://...``) and ``ROLLOUT_ARTIFACT_ROOT`` point elsewhere; :meth:`Places.env` gives
the variables that make a child process use the same places.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Places:
    home: Path
    registry_uri: str
    store_url: str
    artifact_root: str

    @classmethod
    def resolve(
        cls,
        environ: Mapping[str, str],
        *,
        home: str | Path | None = None,
        registry_uri: str | None = None,
        store_url: str | None = None,
    ) -> Places:
        """Explicit arguments win over ``environ``, which wins over the defaults."""
        home_path = Path(home or environ.get("ROLLOUT_HOME") or ".rollout").resolve()
        return cls(
            home=home_path,
            registry_uri=registry_uri
            or environ.get("ROLLOUT_REGISTRY_URI")
            or f"sqlite:///{home_path / 'mlflow.db'}",
            store_url=store_url
            or environ.get("ROLLOUT_STORE_URL")
            or f"sqlite:///{home_path / 'rollout.db'}",
            artifact_root=environ.get("ROLLOUT_ARTIFACT_ROOT")
            or (home_path / "artifacts").as_uri(),
        )

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process use the same places."""
        return {
            "ROLLOUT_HOME": str(self.home),
            "ROLLOUT_REGISTRY_URI": self.registry_uri,
            "ROLLOUT_STORE_URL": self.store_url,
            "ROLLOUT_ARTIFACT_ROOT": self.artifact_root,
        }
