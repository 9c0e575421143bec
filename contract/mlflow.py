""":class:`MlflowRegistryReader`: the :class:`~contract.registry.RegistryReader` of an MLflow
registry (a SQLite file, a database, or ``mlflow server`` over HTTP).

This module imports MLflow; import it only where a registry is opened.
"""

from __future__ import annotations

import os
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contract.errors import ModelLoadFailed, VersionNotFound
from contract.registry import ModelVersionInfo, check_ref

DIGEST_TAG = "rollout.artifact_digest"
GIT_COMMIT_TAG = "mlflow.source.git.commit"


class MlflowRegistryReader:
    def __init__(self, registry_uri: str, artifact_root: str | None = None) -> None:
        self.registry_uri = registry_uri
        self.artifact_root = artifact_root
        # Downloads print a progress bar per artifact otherwise (into a service's log).
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(registry_uri)
        mlflow.set_registry_uri(registry_uri)
        self.client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)

    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        """The version ``ref`` names: a number or an ``@alias``."""
        text = check_ref(model, ref)
        try:
            if text.startswith("@"):
                found = self.client.get_model_version_by_alias(model, text[1:])
            else:
                found = self.client.get_model_version(model, text)
        except MlflowException as exc:
            raise VersionNotFound(
                f"model {model!r} version {ref!r} not found: {exc.message}"
            ) from exc
        return self._info(found)

    def _info(self, found: Any) -> ModelVersionInfo:
        run_id = found.run_id or None
        git_commit = None
        if run_id:
            try:
                git_commit = self.client.get_run(run_id).data.tags.get(GIT_COMMIT_TAG)
            except MlflowException:
                git_commit = None
        signature = None
        try:
            model_info = mlflow.models.get_model_info(f"models:/{found.name}/{found.version}")
            if model_info.signature is not None:
                signature = model_info.signature.to_dict()
        except (MlflowException, OSError):
            signature = None
        return ModelVersionInfo(
            model=found.name,
            version=str(found.version),
            run_id=run_id,
            git_commit=git_commit,
            source=str(found.source),
            digest=(found.tags or {}).get(DIGEST_TAG),
            signature=signature,
            aliases=tuple(getattr(found, "aliases", ()) or ()),
        )

    def alias_version(self, model: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def load_model(self, model: str, version: str) -> Any:
        """The version as a pyfunc, loaded from where this registry says its artifact is (not
        through ``models:/``, which asks whichever registry the process set last)."""
        try:
            return mlflow.pyfunc.load_model(
                self.client.get_model_version_download_uri(model, version)
            )
        except MlflowException as exc:
            raise ModelLoadFailed(f"cannot load {model} v{version}: {exc.message}") from exc
