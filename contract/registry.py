"""Reading the model registry: what a version is, where an alias points, and the model itself.

:class:`RegistryReader` is all a router needs (``load_model``) and what the manager reads; the
manager's registry (:class:`rollout.registry.MlflowRegistry`) adds the writes (aliases,
digests). :class:`contract.mlflow.MlflowRegistryReader` reads an MLflow registry;
:class:`InMemoryRegistry` is its twin. Both raise the :mod:`contract.errors` registry errors.

A version reference is a number (``"3"``), an alias (``"@challenger"``) or a models URI
(``"models:/m@prod"``, ``"models:/m/3"``): :func:`parse_ref`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol

from contract.errors import InvalidReference, ModelLoadFailed, VersionNotFound


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


class RegistryReader(Protocol):
    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        """The version ``ref`` names; VersionNotFound or InvalidReference otherwise."""
        ...

    def alias_version(self, model: str, alias: str) -> str | None:
        """The version ``@alias`` points at, or None."""
        ...

    def load_model(self, model: str, version: str) -> Any:
        """The version as an MLflow pyfunc model (``predict(frame, params=...)``)."""
        ...


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


def check_ref(model: str, ref: str | int) -> str:
    """The number or ``@alias`` of ``ref``, which must name ``model`` if it names one."""
    ref_model, ref_text = parse_ref(str(ref))
    if ref_model is not None and ref_model != model:
        raise InvalidReference(f"reference {ref!r} names model {ref_model!r}, not {model!r}")
    if not ref_text.startswith("@") and not ref_text.isdigit():
        raise InvalidReference(f"version reference {ref!r}: expected a number or '@alias'")
    return ref_text


class InMemoryRegistry:
    """Versions, aliases and model objects in memory: the twin of the MLflow reader."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], ModelVersionInfo] = {}
        self._models: dict[tuple[str, str], Any] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def add(self, model: str, loaded: Any, **info: Any) -> ModelVersionInfo:
        """Register ``loaded`` as the next version of ``model``; ``info`` fills the rest."""
        with self._lock:
            number = 1 + sum(1 for name, _ in self._versions if name == model)
            version = ModelVersionInfo(
                model=model,
                version=str(number),
                run_id=info.get("run_id"),
                git_commit=info.get("git_commit"),
                source=info.get("source", f"memory://{model}/{number}"),
                digest=info.get("digest"),
                signature=info.get("signature"),
                aliases=(),
            )
            self._versions[(model, version.version)] = version
            self._models[(model, version.version)] = loaded
            return version

    def set_alias(self, model: str, alias: str, version: str) -> None:
        with self._lock:
            if (model, version) not in self._versions:
                raise VersionNotFound(f"model {model!r} version {version!r} not found")
            self._aliases[(model, alias)] = version

    def resolve(self, model: str, ref: str | int) -> ModelVersionInfo:
        text = check_ref(model, ref)
        with self._lock:
            version = self._aliases.get((model, text[1:])) if text.startswith("@") else text
            found = self._versions.get((model, version)) if version is not None else None
            if found is None:
                raise VersionNotFound(f"model {model!r} version {ref!r} not found")
            aliases = tuple(a for (m, a), v in self._aliases.items() if m == model and v == version)
            return replace(found, aliases=aliases)

    def alias_version(self, model: str, alias: str) -> str | None:
        with self._lock:
            return self._aliases.get((model, alias))

    def load_model(self, model: str, version: str) -> Any:
        with self._lock:
            if (model, version) not in self._models:
                raise ModelLoadFailed(f"cannot load {model} v{version}: no such version")
            return self._models[(model, version)]
