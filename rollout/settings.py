"""The settings of a manager-side process (manager loop, API, CLI), read once at its start.

:meth:`Settings.from_env` reads every ``ROLLOUT_*`` variable these processes use, once; the
object is then passed down (to the manager, the API, the smoke runner, the webhooks), so
nothing deeper reads the environment. Where things live is :class:`contract.places.Places`
(``ROLLOUT_HOME``, ``ROLLOUT_REGISTRY_URI``, ``ROLLOUT_STORE_URL``, ``ROLLOUT_ARTIFACT_ROOT``);
the rest:

=================================  ============================================================
variable                           meaning
=================================  ============================================================
``ROLLOUT_ENVIRONMENTS_FILE``      environments and approval policies (YAML,
                                   :mod:`rollout.environments`); default
                                   ``$ROLLOUT_HOME/environments.yaml`` when it exists
``ROLLOUT_WEBHOOK_URLS``           comma-separated receivers of every event (:mod:`rollout.notify`)
``ROLLOUT_WEBHOOK_SECRET``         the HMAC key that signs them
``ROLLOUT_ROUTER_URL``             the router smoke tests go through (any environment)
``ROLLOUT_ROUTER_URL_<ENV>``       ... for one environment (``ROLLOUT_ROUTER_URL_PROD``)
``ROLLOUT_PIN_TOKEN``              the bearer token smoke tests pin the candidate with
``ROLLOUT_API_TOKENS``             the API's tokens (:mod:`rollout.auth`)
``ROLLOUT_ACTOR``                  who the CLI acts as on the store (default: the OS user)
``ROLLOUT_API_URL``                the CLI goes through this API (:mod:`rollout.cli.remote`)
``ROLLOUT_TOKEN``                  ... with this bearer token (its identity is who acts)
``ROLLOUT_AUDIT_KEY_FILE``         the audit chain's HMAC key, in a file (:mod:`rollout.audit_key`)
``ROLLOUT_AUDIT_KEY``              ... or the key itself (at least 32 characters); a PostgreSQL
                                   store with neither is refused, a SQLite one gets
                                   ``$ROLLOUT_HOME/audit.key`` (made on first use, mode 0600)
``ROLLOUT_AUDIT_HEAD_FILE``        where the manager loop appends the chain's head (JSON lines;
                                   default ``$ROLLOUT_HOME/audit-head.jsonl``)
``ROLLOUT_AUDIT_HEAD_EVERY_S``     how often it does (default 60 s)
``ROLLOUT_API_MAX_BODY_BYTES``     the largest request body the API reads (default 1 MiB):
                                   a larger one is refused (413) before it is read
``ROLLOUT_API_WATCH_STREAMS``      open ``status?watch=true`` streams one identity may hold
                                   (default 4; one more is refused, 429)
``ROLLOUT_API_WATCH_MAX_S``        how long one watch stream lasts at most (default 3600 s)
``ROLLOUT_SMOKE_PAYLOAD_DIR``      the only directory ``smoke_tests[].payload_file`` may name
                                   files in (default ``$ROLLOUT_HOME/payloads``)
``ROLLOUT_MANAGER_METRICS_PORT``   the manager loop serves ``/metrics`` on this port (unset: no
                                   metrics; :mod:`rollout.metrics_http`)
``ROLLOUT_MANAGER_METRICS_HOST``   ... bound to this address (default ``127.0.0.1``)
``ROLLOUT_METRICS_TOKEN_SHA256``   the API's ``/metrics`` answers a bearer token with this sha256
                                   (unset: 404; :mod:`rollout.metrics_api`)
=================================  ============================================================

A value that cannot be used is a :class:`SettingsError` naming the variable and what was
expected; the CLI prints it as one line and exits 2 before anything starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from contract.places import Places

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_WATCH_STREAMS = 4
DEFAULT_WATCH_MAX_S = 3600.0
METRICS_PORT_ENV = "ROLLOUT_MANAGER_METRICS_PORT"
METRICS_HOST_ENV = "ROLLOUT_MANAGER_METRICS_HOST"
METRICS_TOKEN_ENV = "ROLLOUT_METRICS_TOKEN_SHA256"


class SettingsError(ValueError):
    """A ``ROLLOUT_*`` variable whose value cannot be used; the message names it."""


def metrics_address(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """(host, port) of the manager's metrics, None when ``ROLLOUT_MANAGER_METRICS_PORT`` is
    unset; SettingsError naming the variable for a bad one."""
    raw = environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{METRICS_PORT_ENV}: expected a port number 1..65535, got {raw!r}")
    return environ.get(METRICS_HOST_ENV, "").strip() or "127.0.0.1", int(raw)


def scrape_token_digest(environ: Mapping[str, str]) -> str | None:
    """``ROLLOUT_METRICS_TOKEN_SHA256`` (64 hex digits), None when unset; SettingsError if bad."""
    raw = environ.get(METRICS_TOKEN_ENV, "").strip().lower()
    if not raw:
        return None
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise SettingsError(
            f"{METRICS_TOKEN_ENV}: expected the sha256 of the scrape token (64 hex digits)"
        )
    return raw


def _positive(environ: Mapping[str, str], name: str, default: float) -> float:
    """A positive number from ``environ[name]`` (the default when unset); ValueError names it."""
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}: expected a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    home: Path
    registry_uri: str
    store_url: str
    artifact_root: str
    environments_file: Path | None = None  # environments and approval policies (YAML)
    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str = ""
    router_urls: Mapping[str, str] = field(default_factory=dict)  # environment (or "*") → URL
    pin_token: str | None = None
    api_tokens: str = ""  # identity[:roles][@envs]=sha256,... (rollout.auth.parse_tokens)
    actor: str | None = None
    api_url: str | None = None  # the CLI's verbs go through this API
    api_token: str | None = field(default=None, repr=False)  # ... with this token
    audit_key: str | None = None  # the audit chain's HMAC key itself (rollout.audit_key)
    audit_key_file: Path | None = None  # ... or a file holding it
    audit_key_required: bool = False  # refuse to make one up (a server store, from_env)
    audit_head_file: Path | None = None  # where the loop exports the head (None: the home's)
    audit_head_every_s: float = 60.0
    api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_watch_streams: int = DEFAULT_WATCH_STREAMS  # per identity
    api_watch_max_s: float = DEFAULT_WATCH_MAX_S
    smoke_payload_dir: Path | None = None  # None: $ROLLOUT_HOME/payloads
    manager_metrics: tuple[str, int] | None = None  # (host, port) of the loop's /metrics
    metrics_token_sha256: str | None = None  # the API's /metrics scrape token's digest

    @property
    def payload_dir(self) -> Path:
        """Where ``smoke_tests[].payload_file`` may name files (:mod:`rollout.smoke`)."""
        return self.smoke_payload_dir or self.home / "payloads"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        home: str | Path | None = None,
        registry_uri: str | None = None,
        store_url: str | None = None,
    ) -> Settings:
        """Explicit arguments win over ``environ``, which wins over the defaults."""
        places = Places.resolve(environ, home=home, registry_uri=registry_uri, store_url=store_url)
        env_file = environ.get("ROLLOUT_ENVIRONMENTS_FILE")
        environments = Path(env_file) if env_file else places.home / "environments.yaml"
        router_urls = {
            key.removeprefix("ROLLOUT_ROUTER_URL_").lower(): value
            for key, value in environ.items()
            if key.startswith("ROLLOUT_ROUTER_URL_") and value
        }
        if environ.get("ROLLOUT_ROUTER_URL"):
            router_urls["*"] = environ["ROLLOUT_ROUTER_URL"]
        urls = (u.strip() for u in environ.get("ROLLOUT_WEBHOOK_URLS", "").split(","))
        return cls(
            home=places.home,
            registry_uri=places.registry_uri,
            store_url=places.store_url,
            artifact_root=places.artifact_root,
            environments_file=environments if env_file or environments.exists() else None,
            webhook_urls=tuple(u for u in urls if u),
            webhook_secret=environ.get("ROLLOUT_WEBHOOK_SECRET", ""),
            router_urls=router_urls,
            pin_token=environ.get("ROLLOUT_PIN_TOKEN") or None,
            api_tokens=environ.get("ROLLOUT_API_TOKENS", ""),
            actor=environ.get("ROLLOUT_ACTOR") or None,
            api_url=environ.get("ROLLOUT_API_URL") or None,
            api_token=environ.get("ROLLOUT_TOKEN") or None,
            audit_key=environ.get("ROLLOUT_AUDIT_KEY") or None,
            audit_key_file=_path(environ.get("ROLLOUT_AUDIT_KEY_FILE")),
            audit_key_required=not places.store_url.startswith("sqlite"),
            audit_head_file=_path(environ.get("ROLLOUT_AUDIT_HEAD_FILE")),
            audit_head_every_s=_seconds(environ, "ROLLOUT_AUDIT_HEAD_EVERY_S", 60.0),
            api_max_body_bytes=int(
                _positive(environ, "ROLLOUT_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
            ),
            api_watch_streams=int(
                _positive(environ, "ROLLOUT_API_WATCH_STREAMS", DEFAULT_WATCH_STREAMS)
            ),
            api_watch_max_s=_positive(environ, "ROLLOUT_API_WATCH_MAX_S", DEFAULT_WATCH_MAX_S),
            smoke_payload_dir=(
                Path(environ["ROLLOUT_SMOKE_PAYLOAD_DIR"])
                if environ.get("ROLLOUT_SMOKE_PAYLOAD_DIR")
                else None
            ),
            manager_metrics=metrics_address(environ),
            metrics_token_sha256=scrape_token_digest(environ),
        )

    @classmethod
    def resolve(
        cls,
        home: str | Path | None = None,
        registry_uri: str | None = None,
        store_url: str | None = None,
    ) -> Settings:
        """:meth:`from_env` on this process's environment (call it once, at the start)."""
        return cls.from_env(os.environ, home=home, registry_uri=registry_uri, store_url=store_url)

    @property
    def places(self) -> Places:
        return Places(self.home, self.registry_uri, self.store_url, self.artifact_root)

    def audit_key_bytes(self, *, create: bool = True) -> bytes:
        """The audit chain's key (:func:`rollout.audit_key.audit_key`; ``create``: may make
        the home's key file)."""
        from rollout.audit_key import audit_key

        return audit_key(
            self.audit_key,
            self.audit_key_file,
            self.home,
            required=self.audit_key_required,
            create=create,
        )

    @property
    def audit_head_path(self) -> Path:
        return self.audit_head_file or self.home / "audit-head.jsonl"

    def ensure_home(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        """Environment variables that make a child process use the same places."""
        out = self.places.env()
        if self.environments_file is not None:
            out["ROLLOUT_ENVIRONMENTS_FILE"] = str(self.environments_file)
        if self.smoke_payload_dir is not None:
            out["ROLLOUT_SMOKE_PAYLOAD_DIR"] = str(self.smoke_payload_dir)
        return out


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < 86_400:
        raise SettingsError(f"{name}: expected seconds between 0 and 86400, got {raw!r}")
    return value
