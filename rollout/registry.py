"""The model registry adapter: MLflow's client behind the few verbs a rollout needs.

- resolve a version by number or alias (``"3"``, ``"@challenger"``, ``"models:/m@prod"``);
- read lineage: run id, the run's ``mlflow.source.git.commit``, the signature;
- compute the artifact's content digest (sha256 over the model directory, file by file in path
  order) and record it as the version tag ``rollout.artifact_digest`` at first sight;
- move aliases; load pyfunc models.

The embedded default is a SQLite registry file with a local artifact directory
(:class:`rollout.settings.Settings`), so nothing but Python is needed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rollout.errors import RegistryError

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

DIGEST_TAG = "rollout.artifact_digest"
GIT_COMMIT_TAG = "mlflow.source.git.commit"


@dataclass(frozen=True)
class ModelVersionInfo:
    model: str
    version: str
    run_id: str | None
    git_commit: str | None
    source: str
    digest: str | None  # the recorded digest tag, if any
    signature: dict[str, Any] | None  # {"inputs": [...], "outputs": [...]} as MLflow stores it
    aliases: tuple[str, ...]


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


def parse_ref(ref: str) -> tuple[str | None, str]:
    """Split a version reference into (model or None, version number or ``@alias``).

    ``"3"`` → (None, "3"); ``"@prod"`` → (None, "@prod"); ``"models:/m@prod"`` → ("m", "@prod").
    """
    ref = ref.strip()
    if ref.startswith("models:/"):
        rest = ref.removeprefix("models:/")
        if "@" in rest:
            model, alias = rest.split("@", 1)
            return model, "@" + alias
        model, _, version = rest.partition("/")
        return model, version
    return None, ref


class MlflowRegistry:
    def __init__(self, registry_uri: str, artifact_root: str | None = None) -> None:
        self.registry_uri = registry_uri
        self.artifact_root = artifact_root
        mlflow.set_tracking_uri(registry_uri)
        mlflow.set_registry_uri(registry_uri)
        self.client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)

    # -- experiments (only needed to register models on the embedded default) --
    def ensure_experiment(self, name: str) -> str:
        """The experiment id for ``name``, created with the local artifact root if new."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_root if not self.registry_uri.startswith("http") else None
        return str(self.client.create_experiment(name, artifact_location=location))

    # -- versions --
    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        """The version ``ref`` names: a number or an ``@alias``."""
        ref_model, ref_text = parse_ref(str(ref))
        if ref_model is not None and ref_model != model:
            raise RegistryError(f"reference {ref!r} names model {ref_model!r}, not {model!r}")
        try:
            if ref_text.startswith("@"):
                mv = self.client.get_model_version_by_alias(model, ref_text[1:])
            else:
                if not ref_text.isdigit():
                    raise RegistryError(f"version reference {ref!r}: expected a number or '@alias'")
                mv = self.client.get_model_version(model, ref_text)
        except MlflowException as exc:
            raise RegistryError(
                f"model {model!r} version {ref!r} not found: {exc.message}"
            ) from exc
        return self._info(mv)

    def latest_version(self, model: str) -> str | None:
        try:
            versions = self.client.search_model_versions(f"name = '{model}'")
        except MlflowException:
            return None
        numbers = [int(v.version) for v in versions]
        return str(max(numbers)) if numbers else None

    def _info(self, mv: Any) -> ModelVersionInfo:
        run_id = mv.run_id or None
        git_commit = None
        if run_id:
            try:
                git_commit = self.client.get_run(run_id).data.tags.get(GIT_COMMIT_TAG)
            except MlflowException:
                git_commit = None
        signature = None
        try:
            model_info = mlflow.models.get_model_info(f"models:/{mv.name}/{mv.version}")
            if model_info.signature is not None:
                signature = model_info.signature.to_dict()
        except (MlflowException, OSError):
            signature = None
        return ModelVersionInfo(
            model=mv.name,
            version=str(mv.version),
            run_id=run_id,
            git_commit=git_commit,
            source=str(mv.source),
            digest=(mv.tags or {}).get(DIGEST_TAG),
            signature=signature,
            aliases=tuple(getattr(mv, "aliases", ()) or ()),
        )

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
            raise RegistryError(
                f"artifact of {model} v{version} changed since registration: "
                f"recorded {recorded}, now {actual}"
            )
        return actual

    # -- aliases --
    def alias_version(self, model: str, alias: str) -> str | None:
        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except MlflowException:
            return None

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(model, alias, version)

    def delete_alias(self, model: str, alias: str) -> None:
        try:
            self.client.delete_registered_model_alias(model, alias)
        except MlflowException:
            return

    # -- loading --
    def load_pyfunc(self, model: str, version: str) -> Any:
        try:
            return mlflow.pyfunc.load_model(f"models:/{model}/{version}")
        except MlflowException as exc:
            raise RegistryError(f"cannot load {model} v{version}: {exc.message}") from exc
