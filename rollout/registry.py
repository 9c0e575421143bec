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
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException

from contract.errors import ArtifactChanged
from contract.mlflow import DIGEST_TAG, GIT_COMMIT_TAG, MlflowRegistryReader
from contract.registry import ModelVersionInfo, parse_ref

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DIGEST_TAG",
    "GIT_COMMIT_TAG",
    "MlflowRegistry",
    "ModelVersionInfo",
    "Reference",
    "find_reference",
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


# -- training references (the data a version was trained on, for input drift) --

REFERENCE_NAMES = ("reference.parquet", "reference.csv")  # a sample logged beside the model
MAX_REFERENCE_ROWS = 100_000  # a reference is read up to this many rows, never more


@dataclass(frozen=True)
class Reference:
    """Where a version's training reference was found (``source``) and its first rows, or
    why there is none (``why``)."""

    model: str
    version: str
    source: str | None = None
    frame: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    why: str = ""

    @property
    def found(self) -> bool:
        return self.frame is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "found": self.found,
            "source": self.source,
            "rows": 0 if self.frame is None else len(self.frame),
            "columns": [] if self.frame is None else [str(c) for c in self.frame.columns],
            "why": self.why,
        }


def read_table(path: Path, max_rows: int = MAX_REFERENCE_ROWS) -> pd.DataFrame:
    """A CSV or parquet file's first ``max_rows`` rows; ValueError for any other kind."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, nrows=max_rows)
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa  # type: ignore[import-untyped]
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        batches = []
        taken = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            batches.append(batch.slice(0, max_rows - taken))
            taken += min(batch.num_rows, max_rows - taken)
            if taken >= max_rows:
                break
        return pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame()
    raise ValueError(f"{path.name}: a reference must be .csv or .parquet")


def _local_path(source: str) -> Path | None:
    """The local file a dataset source names (its ``uri``, a path or ``file://``), if any."""
    try:
        uri = json.loads(source).get("uri")
    except (ValueError, AttributeError):
        uri = source
    if not isinstance(uri, str):
        return None
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        return path if path.is_file() else None
    return None


def find_reference(registry: MlflowRegistryReader, model: str, version: str) -> Reference:
    """A version's training reference: a dataset logged on its run with ``mlflow.log_input``
    (the one whose context is ``training`` first) whose source is a CSV or parquet file that
    can be read here, else ``reference.parquet`` / ``reference.csv`` logged beside the model
    (at the run's root or in the model's directory); else a Reference that says why not."""
    info = registry.resolve(model, version)
    if info.run_id is None:
        return Reference(model, info.version, why=f"v{info.version} has no MLflow run")
    run = registry.client.get_run(info.run_id)
    tried: list[str] = []
    inputs = sorted(
        run.inputs.dataset_inputs if run.inputs is not None else [],
        key=lambda given: (
            not any(
                tag.key == "mlflow.data.context" and tag.value in ("training", "train")
                for tag in given.tags
            )
        ),
    )
    for given in inputs:
        dataset = given.dataset
        path = _local_path(dataset.source)
        if path is None:
            tried.append(f"dataset {dataset.name!r} ({dataset.source_type}: not a file here)")
            continue
        try:
            frame = read_table(path)
        except (ValueError, OSError) as exc:
            tried.append(f"dataset {dataset.name!r} ({exc})")
            continue
        return Reference(
            model, info.version, f"mlflow.log_input dataset {dataset.name!r}: {path}", frame
        )
    listed = {a.path for a in registry.client.list_artifacts(info.run_id)}
    for folder in ("", "model"):
        if folder and folder in listed:
            listed |= {a.path for a in registry.client.list_artifacts(info.run_id, folder)}
        for name in REFERENCE_NAMES:
            artifact = f"{folder}/{name}" if folder else name
            if artifact not in listed:
                continue
            with tempfile.TemporaryDirectory(prefix="rollout-reference-") as tmp:
                local = registry.client.download_artifacts(info.run_id, artifact, tmp)
                try:
                    frame = read_table(Path(local))
                except (ValueError, OSError) as exc:
                    tried.append(f"artifact {artifact} ({exc})")
                    continue
            return Reference(model, info.version, f"run artifact {artifact}", frame)
    where = "; ".join(tried) if tried else "no dataset logged with mlflow.log_input"
    return Reference(
        model,
        info.version,
        why=f"no training reference for v{info.version}: {where}; no readable "
        f"{' or '.join(REFERENCE_NAMES)} beside the model",
    )
