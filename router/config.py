"""The router's settings: where the store and the registry are, and how it serves and logs.

:meth:`RouterConfig.from_env` reads, once at the router's start, the same ``ROLLOUT_*`` variables
every process uses (:class:`contract.places.Places`: ``ROLLOUT_HOME``, ``ROLLOUT_STORE_URL``,
``ROLLOUT_REGISTRY_URI``, ``ROLLOUT_ARTIFACT_ROOT``) plus the router's own:

==============================  ===================  ==========================================
variable                        field                meaning
==============================  ===================  ==========================================
``ROLLOUT_ENVIRONMENT``         ``environment``      whose traffic plans to serve (``prod``)
``ROLLOUT_DEFAULT_MODEL``       ``default_model``    the model ``POST /invocations`` serves
``ROLLOUT_PLAN_POLL_S``         ``plan_poll_s``      seconds between reads of the plans
``ROLLOUT_MAX_BODY_BYTES``      ``max_body_bytes``   largest request body accepted
``ROLLOUT_LOG_SAMPLE_RATE``     ``log_sample_rate``  share of records that keep their features
``ROLLOUT_LOG_BATCH_SIZE``      ``log_batch_size``   prediction records per store write
``ROLLOUT_LOG_FLUSH_S``         ``log_flush_s``      longest a record waits before its write
``ROLLOUT_LOG_QUEUE_SIZE``      ``log_queue_size``   records buffered before new ones drop
``ROLLOUT_PREDICT_TIMEOUT_S``   ``predict_timeout_s``  longest a version may take on a request
``ROLLOUT_PIN_TOKEN_SHA256``    ``pin_token_sha256``   sha256 hex of bearer tokens that may pin
``ROLLOUT_BATCH_MAX_SIZE``      ``batch_max_size``   rows per micro-batch (1 = no batching)
``ROLLOUT_BATCH_MAX_WAIT_S``    ``batch_max_wait_s``  longest a request waits for a batch to fill
``ROLLOUT_MIGRATE_STORE``       ``migrate_store``    migrate the store on start (``1``); ``0``
                                                     with a least-privilege login (``rollout_
                                                     router``): the manager migrates it
``ROLLOUT_LABEL_TOKEN_SHA256``  ``label_token_sha256``  sha256 hex of bearer tokens that may
                                                     post labels to ``/v1/feedback``
``ROLLOUT_ALLOW_ANONYMOUS_LABELS``  ``allow_anonymous_labels``  ``1``: anyone may post labels
                                                     (development only; off by default)
``ROLLOUT_REQUEST_ID_KEY``      ``request_id_key``   the key that signs request ids (shared by
                                                     every router behind one balancer; during a
                                                     rotation, keys separated by commas: the
                                                     first signs, all verify)
``ROLLOUT_REQUEST_ID_KEY_FILE``  ``request_id_key_file``  a file holding that key instead (one
                                                     key per line)
``ROLLOUT_LABEL_MAX_AGE_S``     ``label_max_age_s``  oldest request a label is accepted for
                                                     (14 days)
``ROLLOUT_LABEL_MAX_ITEMS``     ``label_max_items``  labels per ``/v1/feedback`` call (1000)
``ROLLOUT_LABEL_MAX_BYTES``     ``label_max_bytes``  one label's JSON size (4096 bytes)
``ROLLOUT_LABEL_MAX_BODY_BYTES``  ``label_max_body_bytes``  a ``/v1/feedback`` body (512 KiB)
==============================  ===================  ==========================================

``pin_token_sha256`` is comma-separated in the environment. A request may pin a version with
``x-model-version`` only with ``Authorization: Bearer TOKEN`` where ``sha256(TOKEN)`` is listed.
``label_token_sha256`` is the same for ``POST /v1/feedback`` (:mod:`router.feedback`); with
none listed, labels are refused (403) unless ``allow_anonymous_labels``. Without a request id
key the router draws a random one per process (:mod:`router.request_ids`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from contract.places import Places

MIB = 1 << 20


@dataclass(frozen=True)
class RouterConfig:
    store_url: str
    registry_uri: str
    artifact_root: str | None = None
    environment: str = "prod"
    default_model: str | None = None  # None: the only model with a plan
    plan_poll_s: float = 0.5
    max_body_bytes: int = MIB
    log_sample_rate: float = 1.0  # features kept on this share of records; every request logged
    log_batch_size: int = 256
    log_flush_s: float = 0.25
    log_queue_size: int = 10_000
    seed: int | None = None  # random draws for requests without a sticky key; None = OS entropy
    predict_timeout_s: float = 5.0
    pin_token_sha256: tuple[str, ...] = ()
    batch_max_size: int = 1  # 1: every request predicted alone
    batch_max_wait_s: float = 0.0  # 0: batch only what arrived in the same event-loop turn
    migrate_store: bool = True  # False: a least-privilege store login; the manager migrates
    label_token_sha256: tuple[str, ...] = ()
    allow_anonymous_labels: bool = False  # development only: labels without a token
    request_id_key: str | None = field(default=None, repr=False)
    request_id_key_file: str | None = None
    label_max_age_s: float = 14 * 86_400.0
    label_max_items: int = 1000
    label_max_bytes: int = 4096
    label_max_body_bytes: int = 512 * 1024

    def __post_init__(self) -> None:
        if not self.environment:
            raise ValueError("environment must not be empty")
        if self.plan_poll_s <= 0:
            raise ValueError(f"plan_poll_s must be > 0, got {self.plan_poll_s}")
        if self.max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be > 0, got {self.max_body_bytes}")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            raise ValueError(f"log_sample_rate must be 0..1, got {self.log_sample_rate}")
        if self.log_batch_size <= 0:
            raise ValueError(f"log_batch_size must be > 0, got {self.log_batch_size}")
        if self.log_flush_s <= 0:
            raise ValueError(f"log_flush_s must be > 0, got {self.log_flush_s}")
        if self.log_queue_size <= 0:
            raise ValueError(f"log_queue_size must be > 0, got {self.log_queue_size}")
        if self.predict_timeout_s <= 0:
            raise ValueError(f"predict_timeout_s must be > 0, got {self.predict_timeout_s}")
        if self.batch_max_size < 1:
            raise ValueError(f"batch_max_size must be >= 1, got {self.batch_max_size}")
        if self.batch_max_wait_s < 0:
            raise ValueError(f"batch_max_wait_s must be >= 0, got {self.batch_max_wait_s}")
        for name in ("pin_token_sha256", "label_token_sha256"):
            for digest in getattr(self, name):
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(
                        f"{name}: {digest[:12]!r}... is not a lowercase sha256 hex digest"
                    )
        for name in ("label_max_age_s", "label_max_items", "label_max_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.label_max_body_bytes <= 0:
            raise ValueError(f"label_max_body_bytes must be > 0, got {self.label_max_body_bytes}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RouterConfig:
        """The configuration the environment describes; keyword ``overrides`` win over it.

        Raises ``ValueError`` naming the variable whose value cannot be read.
        """
        env = os.environ if environ is None else environ
        places = Places.resolve(env)
        values: dict[str, Any] = {
            "store_url": places.store_url,
            "registry_uri": places.registry_uri,
            "artifact_root": places.artifact_root,
        }
        for name, parse in _ENV_FIELDS.items():
            variable = "ROLLOUT_" + name.upper()
            raw = env.get(variable)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ValueError(f"{variable}={raw!r}: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown RouterConfig fields: {sorted(unknown)}")
        return cls(**values)

    def with_changes(self, **changes: Any) -> RouterConfig:
        return replace(self, **changes)

    def env(self) -> dict[str, str]:
        """Environment variables that make :meth:`from_env` rebuild this configuration."""
        out = {
            "ROLLOUT_STORE_URL": self.store_url,
            "ROLLOUT_REGISTRY_URI": self.registry_uri,
        }
        if self.artifact_root is not None:
            out["ROLLOUT_ARTIFACT_ROOT"] = self.artifact_root
        for name in _ENV_FIELDS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                out["ROLLOUT_" + name.upper()] = ",".join(value)
            elif value is not None:
                out["ROLLOUT_" + name.upper()] = str(value)
        return out


def _str(raw: str) -> str:
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _digests(raw: str) -> tuple[str, ...]:
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


_ENV_FIELDS: dict[str, Callable[[str], Any]] = {
    "environment": _str,
    "default_model": _str,
    "plan_poll_s": float,
    "max_body_bytes": int,
    "log_sample_rate": float,
    "log_batch_size": int,
    "log_flush_s": float,
    "log_queue_size": int,
    "seed": int,
    "predict_timeout_s": float,
    "pin_token_sha256": _digests,
    "batch_max_size": int,
    "batch_max_wait_s": float,
    "migrate_store": _bool,
    "label_token_sha256": _digests,
    "allow_anonymous_labels": _bool,
    "request_id_key": _str,
    "request_id_key_file": _str,
    "label_max_age_s": float,
    "label_max_items": int,
    "label_max_bytes": int,
    "label_max_body_bytes": int,
}
