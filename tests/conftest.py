"""Shared fixtures: a real MLflow registry with the demo's three versions, and real stores.

- ``demo_home`` (session): a data directory whose SQLite MLflow registry holds model ``bc``
  v1 (baseline), v2 (better), v3 (broken), trained once per session;
- ``home`` (function): a private copy of it, so a test may move aliases and write plans freely;
- ``store_url``: parametrised over a SQLite file and a fresh PostgreSQL database (created and
  dropped per test; skipped off CI when no server answers, a failure under ``CI=true``);
- :func:`serving`: an ASGI app served by uvicorn on a loopback port, and an HTTP client for it;
- :func:`wait_until`: how a test waits for something another thread or process does (a plan
  applied, records written, a rollout's state): it polls a condition, never sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from contract.records import Feedback, PredictionRecord
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink
from rollout.demo.models import DemoData, load_data, register_versions
from rollout.registry import MlflowRegistry
from rollout.settings import Settings

MODEL = "bc"
PG_ADMIN_URL = os.environ.get("ROLLOUT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
WAIT_S = 60.0  # how long wait_until waits by default: it costs time only when something is broken

T = TypeVar("T")


@contextmanager
def serving(app: Any) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn on a free loopback port; a client for it, until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with httpx.Client(base_url=base_url, timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def clear_of_a_closing(margin_s: float, window_s: float = 3600.0, settle_s: float = 60.0) -> float:
    """Now, once the next clock-aligned monitoring window (``window_s``, read ``settle_s`` after
    its end, as rollout/degradation.py does) is more than ``margin_s`` from closing; sleeps
    past the closing when it is nearer. A test that writes into "the newest closed window" and
    reads it back by the real clock must not straddle a closing."""
    to_next = window_s - (time.time() - settle_s) % window_s
    if to_next < margin_s:
        time.sleep(to_next + 1.0)
    return time.time()


def wait_until(
    read: Callable[[], T],
    what: str,
    timeout_s: float = WAIT_S,
    *,
    until: Callable[[T], object] = bool,
    interval_s: float = 0.02,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``read`` every ``interval_s`` until ``until(value)`` holds (by default: the value is
    true), and return that value.

    Fails once ``timeout_s`` pass, naming ``what`` was awaited and the last value read (or the
    last exception of a type in ``ignoring``, which counts as not yet).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = read()
        except ignoring as exc:
            last: object = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}; last seen: {last!r}")
        time.sleep(interval_s)


@dataclass(frozen=True)
class DemoHome:
    settings: Settings
    versions: dict[str, str]  # role → version: baseline, better, broken
    data: DemoData


def logged(
    rollout_id: str,
    arm: str,
    version: str,
    output: object = None,
    *,
    latency_ms: float = 5.0,
    error: str | None = None,
    request_id: str | None = None,
) -> PredictionRecord:
    """One prediction-log record of model ``bc`` in prod, as a router writes it (output is
    one predicted row; an ``error`` makes it a failed request without output)."""
    return PredictionRecord(
        request_id=request_id or uuid.uuid4().hex,
        ts=time.time(),
        environment="prod",
        model=MODEL,
        version=version,
        arm=arm,
        rollout_id=rollout_id,
        plan_generation=1,
        features=None,
        output=None if error is not None else json.dumps([output]),
        latency_ms=latency_ms,
        error=error,
        status_code=500 if error is not None else 200,
    )


class LogWriter:
    """Writes prediction records and labels the way a router does: through the contract's one
    writer (:mod:`contract.sql.predictions`), never a test-only path."""

    def __init__(self, engine: Engine) -> None:
        self._records = SqlPredictionSink(engine)
        self._labels = SqlFeedbackSink(engine)

    def write(self, records: list[PredictionRecord]) -> None:
        self._records.write(records)

    def add_feedback(self, labels: list[Feedback]) -> None:
        self._labels.add_feedback(labels)


NO_APPROVAL_ENVIRONMENTS = (
    "environments: [dev, staging, {name: prod, approval: {required: false}}]\n"
)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> DemoHome:
    root = tmp_path_factory.mktemp("demo-home")
    settings = Settings.resolve(home=root)
    settings.ensure_home()
    registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
    data = load_data()
    versions = register_versions(registry, MODEL, data)
    return DemoHome(settings=settings, versions=versions, data=data)


@pytest.fixture
def home(demo_home: DemoHome, tmp_path: Path) -> DemoHome:
    """A copy of the demo home's registry (artifacts stay shared and read-only)."""
    target = tmp_path / "home"
    target.mkdir()
    shutil.copy(demo_home.settings.home / "mlflow.db", target / "mlflow.db")
    # prod requires an approval by default; these tests walk rollouts to their end without
    # one unless they say otherwise (the approval tests configure their own environments)
    environments = target / "environments.yaml"
    environments.write_text(NO_APPROVAL_ENVIRONMENTS)
    settings = Settings(
        home=target,
        registry_uri=f"sqlite:///{target / 'mlflow.db'}",
        store_url=f"sqlite:///{target / 'rollout.db'}",
        artifact_root=demo_home.settings.artifact_root,
        environments_file=environments,
    )
    return DemoHome(settings=settings, versions=demo_home.versions, data=demo_home.data)


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database's URL, dropped afterwards (skipped off CI without a server)."""
    if not _postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI but {PG_ADMIN_URL} does not answer")
        pytest.skip(f"no PostgreSQL server at {PG_ADMIN_URL}")
    import psycopg

    name = f"rollout_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
