""":class:`MlflowRegistryReader`: the :class:`~contract.registry.RegistryReader` of an MLflow
registry (a SQLite file, a database, or ``mlflow server`` over HTTP).

This module imports MLflow; import it only where a registry is opened.

A registry that answers "no such model, version or alias" (MLflow's ``RESOURCE_DOES_NOT_EXIST``,
or ``INVALID_PARAMETER_VALUE`` for an unknown alias) raises
:class:`~contract.errors.VersionNotFound`; one that gives no answer (connection refused, a
timeout, a 5xx, a rate limit, a proxy's page instead of MLflow's reply, a database error
behind a database-backed registry) raises :class:`~contract.errors.RegistryUnavailable`
(:func:`registry_error`): the first is a fact about the version, the second about the registry.
"""

from __future__ import annotations

import os
import re
from typing import Any

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from contract.errors import ModelLoadFailed, RegistryUnavailable, VersionNotFound
from contract.registry import ModelVersionInfo, check_ref

DIGEST_TAG = "rollout.artifact_digest"
GIT_COMMIT_TAG = "mlflow.source.git.commit"

# MLflow error codes by which a registry that answered says "there is no such thing".
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})
MAX_REASON_CHARS = 200  # how much of a registry's error a message quotes
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
_HOST_PORT = re.compile(r"host='[^']*', port=\d+")


def answered_not_found(exc: BaseException) -> bool:
    """Did a registry that answered say the thing does not exist?"""
    return isinstance(exc, MlflowException) and exc.error_code in NOT_FOUND_CODES


def short_reason(exc: BaseException) -> str:
    """What went wrong, in a few words and without the registry's address (a status is read by
    every viewer): ``connection refused``, ``timed out``, or the first line of the message with
    URLs and host/port pairs left out, at most ``MAX_REASON_CHARS`` characters."""
    text = exc.message if isinstance(exc, MlflowException) else str(exc)
    lowered = "" if answered_not_found(exc) else text.lower()
    if "connection refused" in lowered or "failed to establish a new connection" in lowered:
        return "connection refused"
    if "timed out" in lowered or "timeout" in lowered:
        return "timed out"
    if "too many 5" in lowered or "responseerror" in lowered:
        return "the registry keeps answering with server errors (5xx)"
    line = (text.strip().splitlines() or [type(exc).__name__])[0]
    line = _URL.sub("<url>", _HOST_PORT.sub("<host>", line))
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"


def registry_error(exc: BaseException, what: str) -> VersionNotFound | RegistryUnavailable:
    """``exc`` (raised while asking the registry for ``what``) as the error it means: the
    registry answered that it does not exist, or it did not answer."""
    if answered_not_found(exc):
        return VersionNotFound(f"{what} not found: {short_reason(exc)}")
    return RegistryUnavailable(f"the registry did not answer for {what}: {short_reason(exc)}")


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
        except (MlflowException, OSError) as exc:
            raise registry_error(exc, f"model {model!r} version {ref!r}") from exc
        return self._info(found)

    def _info(self, found: Any) -> ModelVersionInfo:
        run_id = found.run_id or None
        git_commit = None
        if run_id:
            try:
                git_commit = self.client.get_run(run_id).data.tags.get(GIT_COMMIT_TAG)
            except (MlflowException, OSError) as exc:
                if not answered_not_found(exc):  # lineage is never dropped for an outage
                    raise registry_error(exc, f"run {run_id}") from exc
                git_commit = None
        signature = None
        try:
            model_info = mlflow.models.get_model_info(f"models:/{found.name}/{found.version}")
            if model_info.signature is not None:
                signature = model_info.signature.to_dict()
        except (MlflowException, requests.RequestException) as exc:
            if not answered_not_found(exc):
                what = f"the signature of {found.name} v{found.version}"
                raise registry_error(exc, what) from exc
            signature = None
        except OSError:  # no MLmodel file where the version says its artifact is
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
        """The version ``@alias`` points at; None when the registry says there is none,
        RegistryUnavailable when it does not answer."""
        try:
            return str(self.client.get_model_version_by_alias(model, alias).version)
        except (MlflowException, OSError) as exc:
            if answered_not_found(exc):
                return None
            raise registry_error(exc, f"alias {model}@{alias}") from exc

    def load_model(self, model: str, version: str) -> Any:
        """The version as a pyfunc, loaded from where this registry says its artifact is (not
        through ``models:/``, which asks whichever registry the process set last)."""
        try:
            return mlflow.pyfunc.load_model(
                self.client.get_model_version_download_uri(model, version)
            )
        except MlflowException as exc:
            raise ModelLoadFailed(f"cannot load {model} v{version}: {exc.message}") from exc
