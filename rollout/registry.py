"""The manager's registry: the MLflow reader (:mod:`contract.mlflow`) plus the writes.

On top of resolving versions and aliases (:class:`~contract.mlflow.MlflowRegistryReader`) the
manager needs to:

- compute a version's artifact digest (sha256 over the model directory, file by file in path
  order) and record it as the version tag ``rollout.artifact_digest`` at first sight, then check
  the artifact still has it (:class:`~contract.errors.ArtifactChanged` otherwise);
- move the ``@<environment>`` aliases;
- create the experiment that holds the models registered on the embedded default
  (:class:`rollout.settings.Settings`), so nothing but Python is needed.

Outages (the contract): every call of the manager's registry is bounded. Over HTTP one
attempt waits at most ``timeout_s`` (4 s by default) and is not retried by MLflow
(``retries``: 0 by default; MLflow's own default retries for about four minutes, which would
block the manager loop and lose its 5 s lease); the manager's next tick is the retry. The
operator's own ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` /
``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` win. MLflow reads them from the process's environment,
so they are set there (:mod:`rollout.child_env`), and left out of the environment of the
processes this one starts: a router loading a model keeps MLflow's own retries. A registry that
gives no answer raises
:class:`~contract.errors.RegistryUnavailable` (503 ``unavailable``), never
:class:`~contract.errors.VersionNotFound`, which means the registry answered "no such
version" (:func:`contract.mlflow.registry_error`). After a call found the registry down, calls
in the next ``probe_every_s`` (2 s) fail at once with the same reason instead of each waiting
for its own timeout, so one tick over many rollouts waits for at most one timeout; the first
call after that asks the registry again. What a rollout does meanwhile is
:mod:`rollout.outage`.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.errors import ArtifactChanged, RegistryError, RegistryUnavailable
from contract.mlflow import (
    DIGEST_TAG,
    GIT_COMMIT_TAG,
    MlflowRegistryReader,
    registry_error,
)
from contract.registry import ModelVersionInfo, parse_ref
from rollout.child_env import default_env

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

DEFAULT_TIMEOUT_S = 4  # one HTTP attempt to the registry waits at most this long
DEFAULT_RETRIES = 0  # MLflow's own retries of a failed attempt (the next tick retries)
PROBE_EVERY_S = 2.0  # while the registry is down, how often a call asks it again
# Failures of a registry call that mean "no answer" (requests' errors are OSErrors).
NO_ANSWER = (MlflowException, OSError, SQLAlchemyError)

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
    def __init__(
        self,
        registry_uri: str,
        artifact_root: str | None = None,
        *,
        timeout_s: int = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        probe_every_s: float = PROBE_EVERY_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        # MLflow reads these at each request; an operator's own settings win.
        default_env("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
        default_env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(retries))
        default_env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        super().__init__(registry_uri, artifact_root)
        self.probe_every_s = probe_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down: tuple[float, float, str] | None = None  # (since, last asked, reason)

    # -- outages --
    @property
    def down_since(self) -> float | None:
        """Since when calls have found the registry not answering; None while it answers."""
        down = self._down
        return None if down is None else down[0]

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        """One call to the registry about ``what``: its failure as the error it means
        (:func:`contract.mlflow.registry_error`); while the registry is down, fail at once
        until ``probe_every_s`` has passed since it was last asked."""
        now = self._clock.time()
        with self._lock:
            down = self._down
            if down is not None and now - down[1] < self.probe_every_s:
                raise RegistryUnavailable(down[2])
            if down is not None:
                self._down = (down[0], now, down[2])  # this call is the probe
        try:
            yield
        except RegistryUnavailable as exc:
            self._failed(str(exc))
            raise
        except RegistryError:
            self._answered()
            raise
        except NO_ANSWER as exc:
            error = registry_error(exc, what)
            if isinstance(error, RegistryUnavailable):
                self._failed(str(error))
            else:
                self._answered()
            raise error from exc
        self._answered()

    def _failed(self, reason: str) -> None:
        """The registry did not answer: calls fail at once until ``probe_every_s`` from now
        (after the failed call's own wait)."""
        now = self._clock.time()
        with self._lock:
            since = self._down[0] if self._down is not None else now
            self._down = (since, now, reason)

    def _answered(self) -> None:
        with self._lock:
            self._down = None

    # -- reads --
    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        with self._asking(f"model {model!r} version {ref!r}"):
            return super().resolve(model, ref)

    def alias_version(self, model: str, alias: str) -> str | None:
        with self._asking(f"alias {model}@{alias}"):
            return super().alias_version(model, alias)

    # -- experiments (only needed to register models on the embedded default) --
    def ensure_experiment(self, name: str) -> str:
        """The experiment id for ``name``, created with the local artifact root if new."""
        with self._asking(f"experiment {name!r}"):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            location = self.artifact_root if not self.registry_uri.startswith("http") else None
            return str(self.client.create_experiment(name, artifact_location=location))

    def latest_version(self, model: str) -> str | None:
        """The highest version number of ``model``; None when it has none (or no answer)."""
        try:
            with self._asking(f"the versions of {model!r}"):
                versions = self.client.search_model_versions(f"name = '{model}'")
        except RegistryError:
            return None
        numbers = [int(v.version) for v in versions]
        return str(max(numbers)) if numbers else None

    # -- digests --
    def compute_digest(self, model: str, version: str) -> str:
        with (
            self._asking(f"the artifact of {model} v{version}"),
            tempfile.TemporaryDirectory(prefix="rollout-digest-") as tmp,
        ):
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
        with self._asking(f"the digest tag of {model} v{version}"):
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
        with self._asking(f"alias {model}@{alias}"):
            self.client.set_registered_model_alias(model, alias, version)

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove ``@alias``; nothing when the registry says there is none."""
        try:
            with self._asking(f"alias {model}@{alias}"):
                self.client.delete_registered_model_alias(model, alias)
        except RegistryUnavailable:
            raise
        except RegistryError:
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
