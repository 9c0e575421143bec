"""The manager's registry: the MLflow reader (:mod:`contract.mlflow`) plus the writes.

On top of resolving versions and aliases (:class:`~contract.mlflow.MlflowRegistryReader`) the
manager needs to:

- compute a version's artifact digest (sha256 over the model directory, file by file in path
  order) and record it as the version tag ``rollout.artifact_digest`` at first sight, then check
  the artifact still has it (:class:`~contract.errors.ArtifactChanged` otherwise);
- move the ``@<environment>`` aliases;
- create the experiment that holds the models registered on the embedded default
  (:class:`rollout.settings.Settings`), so nothing but Python is needed.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from contract.errors import ArtifactChanged
from contract.mlflow import DIGEST_TAG, GIT_COMMIT_TAG, MlflowRegistryReader
from contract.registry import ModelVersionInfo, parse_ref

__all__ = [
    "DIGEST_TAG",
    "GIT_COMMIT_TAG",
    "MlflowRegistry",
    "ModelVersionInfo",
    "parse_ref",
    "sha256_dir",
]

# Written by MLflow into a model directory when it is registered or downloaded through the
# registry: metadata about the registration, not part of the artifact.
_NOT_CONTENT = frozenset({"registered_model_meta"})


def sha256_dir(path: Path) -> str:
    """sha256 over every file under ``path``: relative path and contents, in path order.

    MLflow's ``registered_model_meta`` is left out: it names the registration, so the same
    artifact registered twice would otherwise get two digests.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in _NOT_CONTENT)
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


class MlflowRegistry(MlflowRegistryReader):
    # -- experiments (only needed to register models on the embedded default) --
    def ensure_experiment(self, name: str) -> str:
        """The experiment id for ``name``, created with the local artifact root if new."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_root if not self.registry_uri.startswith("http") else None
        return str(self.client.create_experiment(name, artifact_location=location))

    def latest_version(self, model: str) -> str | None:
        try:
            versions = self.client.search_model_versions(f"name = '{model}'")
        except MlflowException:
            return None
        numbers = [int(v.version) for v in versions]
        return str(max(numbers)) if numbers else None

    # -- digests --
    def compute_digest(self, model: str, version: str) -> str:
        with tempfile.TemporaryDirectory(prefix="rollout-digest-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model}/{version}", dst_path=tmp
            )
            return sha256_dir(Path(local))

    def record_digest(self, model: str, version: str) -> str:
        """The digest recorded at first sight; computed and tagged now if there is none."""
        info = self.resolve(model, version)
        if info.digest:
            return info.digest
        digest = self.compute_digest(model, version)
        self.client.set_model_version_tag(model, version, DIGEST_TAG, digest)
        return digest

    def verify_digest(self, model: str, version: str) -> str:
        """Recompute the digest and compare with the recorded one; raise if they differ."""
        recorded = self.record_digest(model, version)
        actual = self.compute_digest(model, version)
        if actual != recorded:
            raise ArtifactChanged(
                f"artifact of {model} v{version} changed since registration: "
                f"recorded {recorded}, now {actual}"
            )
        return actual

    # -- aliases --
    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(model, alias, version)

    def delete_alias(self, model: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(model, alias)
        except MlflowException:
            return
