"""The serving contract's Protocols, one suite over every implementation.

Each Protocol of :mod:`contract` has an in-memory twin; the same tests run against it and
against the real thing: the SQL store on SQLite and on PostgreSQL (plans, prediction records,
labels), MLflow registries on a SQLite file and on a PostgreSQL database (the registry reader),
and a real HTTP receiver on loopback (the webhook notifier).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from conftest import fresh_postgres_database
from contract.clock import SYSTEM_CLOCK, Clock, ManualClock
from contract.errors import InvalidReference, ModelLoadFailed, VersionNotFound, http_status
from contract.names import ARMS
from contract.notify import InMemoryNotifier, Notification, Notifier, NotifyFailed
from contract.plans import InMemoryPlanStore, PlanStore, TrafficPlan
from contract.records import (
    Feedback,
    FeedbackSink,
    InMemoryPredictionLog,
    LabelConflict,
    PredictionRecord,
    PredictionSink,
)
from contract.registry import InMemoryRegistry, RegistryReader
from contract.sql.engine import normalize_url, open_engine
from contract.sql.plans import SqlPlanStore
from contract.sql.predictions import SqlFeedbackSink, SqlPredictionSink
from contract.sql.schema import feedback, feedback_history, predictions
from monitors.names import ARMS as GATE_ARMS
from rollout.notify import WebhookNotifier
from rollout.registry import MlflowRegistry

IMPLEMENTATIONS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# -- plans --


@pytest.fixture(params=IMPLEMENTATIONS)
def plan_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PlanStore]:
    url = _url(request, tmp_path)
    if url is None:
        yield InMemoryPlanStore()
        return
    engine = open_engine(url)
    yield SqlPlanStore(engine)
    engine.dispose()


def test_plans_get_a_new_generation_on_every_write(plan_store: PlanStore) -> None:
    assert plan_store.get("prod", "bc") is None
    first = plan_store.put(TrafficPlan("prod", "bc", "1"))
    assert first.generation == 1
    canary = TrafficPlan("prod", "bc", "1", "2", 10, sticky_key="header:x-user", rollout_id="r-1")
    second = plan_store.put(replace(canary, generation=99))  # the store numbers, not the writer
    assert second == replace(canary, generation=2)
    assert plan_store.get("prod", "bc") == second


def test_plans_list_by_environment_in_model_order(plan_store: PlanStore) -> None:
    plan_store.put(TrafficPlan("prod", "zeta", "3"))
    plan_store.put(TrafficPlan("staging", "bc", "1"))
    plan_store.put(TrafficPlan("prod", "alpha", "1", shadow_version="2", shadow_fraction=0.5))
    assert [(p.environment, p.model) for p in plan_store.list()] == [
        ("prod", "alpha"),
        ("prod", "zeta"),
        ("staging", "bc"),
    ]
    (staging,) = plan_store.list("staging")
    assert (staging.model, staging.generation) == ("bc", 1)
    alpha = plan_store.list("prod")[0]
    assert (alpha.shadow_version, alpha.shadow_fraction, alpha.versions) == ("2", 0.5, ("1", "2"))
    assert plan_store.list("dev") == []


def test_a_plan_names_the_release_of_each_version(plan_store: PlanStore) -> None:
    stored = plan_store.put(TrafficPlan("prod", "bc", "1", "2", 50, rollout_id="r-9"))
    assert (stored.release_of("1"), stored.release_of("2"), stored.release_of("7")) == (
        None,
        "rollout:r-9",
        None,
    )
    stored = plan_store.put(TrafficPlan("prod", "bc", "2", baseline_release_id=12))
    assert plan_store.get("prod", "bc") == stored
    assert stored.release_of("2") == "12"


# -- prediction records and labels --


@dataclass
class Log:
    records: PredictionSink
    labels: FeedbackSink
    read_records: Callable[[], list[PredictionRecord]]
    read_labels: Callable[[], dict[str, tuple[object, float]]]
    read_history: Callable[[], list[tuple[str, object, float, str | None, float]]]


@pytest.fixture(params=IMPLEMENTATIONS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Log]:
    url = _url(request, tmp_path)
    if url is None:
        memory = InMemoryPredictionLog()
        yield Log(
            memory,
            memory,
            lambda: list(memory.records),
            lambda: {f.request_id: (f.label, f.ts) for f in memory.labels},
            lambda: [(f.request_id, f.label, f.ts, f.writer, at) for f, at in memory.history],
        )
        return
    engine = open_engine(url)

    def read_records() -> list[PredictionRecord]:
        with engine.connect() as conn:
            rows = conn.execute(select(predictions).order_by(predictions.c.id))
            return [
                PredictionRecord(**{k: v for k, v in row._mapping.items() if k != "id"})
                for row in rows
            ]

    def read_labels() -> dict[str, tuple[object, float]]:
        with engine.connect() as conn:
            rows = conn.execute(select(feedback.c.request_id, feedback.c.label, feedback.c.ts))
            return {rid: (json.loads(label), ts) for rid, label, ts in rows}

    def read_history() -> list[tuple[str, object, float, str | None, float]]:
        h = feedback_history.c
        with engine.connect() as conn:
            rows = conn.execute(
                select(h.request_id, h.label, h.ts, h.writer, h.replaced_at).order_by(h.id)
            )
            return [(r, json.loads(label), ts, w, at) for r, label, ts, w, at in rows]

    yield Log(
        SqlPredictionSink(engine), SqlFeedbackSink(engine), read_records, read_labels, read_history
    )
    engine.dispose()


def _record(request_id: str, arm: str = "baseline", **changes: Any) -> PredictionRecord:
    values: dict[str, Any] = {
        "request_id": request_id,
        "ts": 1_700_000_000.25,
        "environment": "prod",
        "model": "bc",
        "version": "1",
        "arm": arm,
        "rollout_id": "r-1",
        "plan_generation": 3,
        "features": '[{"x": 1.5, "site": "b"}]',
        "output": "[0.25]",
        "latency_ms": 1.75,
        "error": None,
        "status_code": 200,
    }
    return PredictionRecord(**{**values, **changes})


def test_records_are_stored_as_written(log: Log) -> None:
    written = [_record(f"q{i}", arm) for i, arm in enumerate(ARMS)]
    written.append(
        _record(
            "q9", "canary", output=None, features=None, error="ModelError: boom", status_code=500
        )
    )
    log.records.write(written)
    log.records.write([])  # nothing to do
    assert log.read_records() == written


def test_a_batch_larger_than_one_statement_is_written_whole(log: Log) -> None:
    batch = [_record(f"q{i}", latency_ms=float(i)) for i in range(450)]
    log.records.write(batch)
    assert [r.latency_ms for r in log.read_records()] == [float(i) for i in range(450)]


def test_the_first_label_wins_and_only_its_writer_replaces_it(log: Log) -> None:
    log.labels.add_feedback([Feedback("a", 1, 10.0, "w1"), Feedback("b", [0, 1], 11.0, "w1")])
    log.labels.add_feedback([])
    with pytest.raises(LabelConflict) as info:
        log.labels.add_feedback([Feedback("a", 0, 12.0, "w2")])
    assert info.value.request_ids == ("a",)
    # A batch with one conflict stores nothing, not even its new labels.
    with pytest.raises(LabelConflict):
        log.labels.add_feedback([Feedback("c", 1, 12.0, "w2"), Feedback("b", 1, 12.0, "w2")])
    assert log.read_labels() == {"a": (1, 10.0), "b": ([0, 1], 11.0)}
    # The same label again from its writer (a retried call) changes nothing.
    log.labels.add_feedback([Feedback("a", 1, 13.0, "w1")])
    assert log.read_labels()["a"] == (1, 10.0) and log.read_history() == []
    # Its writer corrects it: the new label counts, the old one is kept.
    log.labels.add_feedback([Feedback("a", 0, 14.0, "w1"), Feedback("c", 1, 14.0, "w2")])
    assert log.read_labels() == {"a": (0, 14.0), "b": ([0, 1], 11.0), "c": (1, 14.0)}
    assert log.read_history() == [("a", 1, 10.0, "w1", 14.0)]


def test_a_label_without_a_writer_cannot_be_taken_over(log: Log) -> None:
    log.labels.add_feedback([Feedback("old", 1, 10.0)])  # stored before writers were recorded
    with pytest.raises(LabelConflict):
        log.labels.add_feedback([Feedback("old", 0, 11.0, "w1")])
    assert log.read_labels() == {"old": (1, 10.0)}


def test_two_writers_racing_for_the_first_label_one_wins(log: Log) -> None:
    outcomes: list[str] = []
    for n in range(10):
        barrier = threading.Barrier(2)

        def write(writer: str, label: int, rid: str = f"race-{n}", barrier: Any = barrier) -> None:
            barrier.wait()
            try:
                log.labels.add_feedback([Feedback(rid, label, 1.0, writer)])
                outcomes.append(writer)
            except LabelConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=write, args=(w, i)) for i, w in enumerate(("w1", "w2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert outcomes.count("conflict") == 10 and len(outcomes) == 20
    labels = log.read_labels()
    assert len(labels) == 10
    assert log.read_history() == []


def test_the_gates_samples_are_two_of_the_logged_arms() -> None:
    assert set(GATE_ARMS) <= set(ARMS)


# -- the registry reader --


class Doubler:
    def predict(self, frame: pd.DataFrame, params: Any = None) -> Any:
        return frame["x"] * 2


@dataclass
class Registry:
    reader: RegistryReader
    versions: tuple[str, str]  # two versions of model "m"; @champion → the first


@pytest.fixture(scope="module", params=IMPLEMENTATIONS)
def registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Two versions of model ``m`` (``@champion`` → the first), registered once per module: an
    MLflow registry costs seconds to create and the tests only read it."""
    if request.param == "memory":
        memory = InMemoryRegistry()
        first = memory.add("m", Doubler(), run_id="run-1").version
        second = memory.add("m", Doubler()).version
        memory.set_alias("m", "champion", first)
        yield Registry(memory, (first, second))
        return
    tmp = tmp_path_factory.mktemp(f"registry-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "postgres":
            uri = normalize_url(stack.enter_context(fresh_postgres_database()))
        else:
            uri = f"sqlite:///{tmp}/mlflow.db"
        yield _mlflow_registry(uri, tmp)


def _mlflow_registry(uri: str, tmp: Path) -> Registry:
    writer = MlflowRegistry(uri, (tmp / "artifacts").as_uri())
    experiment = writer.ensure_experiment("contract")
    X = pd.DataFrame({"x": np.linspace(-1, 1, 40)})
    y = (X["x"] > 0).astype(int)
    versions = []
    for c in (1.0, 0.1):
        estimator = LogisticRegression(C=c).fit(X, y)
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(
                estimator,
                name="model",
                signature=infer_signature(X, estimator.predict(X)),
                registered_model_name="m",
            )
        versions.append(str(info.registered_model_version))
    writer.set_alias("m", "champion", versions[0])
    return Registry(writer, (versions[0], versions[1]))


def test_versions_resolve_by_number_alias_and_uri(registry: Registry) -> None:
    first, second = registry.versions
    reader = registry.reader
    assert reader.resolve("m", second).version == second
    assert reader.resolve("m", int(second)).version == second
    champion = reader.resolve("m", "@champion")
    assert (champion.model, champion.version, champion.aliases) == ("m", first, ("champion",))
    assert reader.resolve("m", "models:/m@champion").version == first
    assert reader.alias_version("m", "champion") == first
    assert reader.alias_version("m", "nobody") is None


def test_a_missing_or_malformed_reference_is_a_named_error(registry: Registry) -> None:
    reader = registry.reader
    with pytest.raises(VersionNotFound) as missing:
        reader.resolve("m", "99")
    assert http_status(missing.value) == (404, "not_found")
    with pytest.raises(VersionNotFound):
        reader.resolve("m", "@nobody")
    with pytest.raises(VersionNotFound):
        reader.resolve("no-such-model", "1")
    with pytest.raises(InvalidReference, match="expected a number or '@alias'") as bad:
        reader.resolve("m", "latest")
    assert http_status(bad.value) == (422, "registry_error")
    with pytest.raises(InvalidReference, match="names model 'other'"):
        reader.resolve("m", "models:/other@champion")


def test_a_loaded_version_predicts(registry: Registry) -> None:
    first, _ = registry.versions
    model = registry.reader.load_model("m", first)
    predicted = np.asarray(model.predict(pd.DataFrame({"x": [-0.9, 0.9]})))
    assert predicted.shape == (2,) and predicted[1] > predicted[0]
    with pytest.raises(ModelLoadFailed):
        registry.reader.load_model("m", "99")


# -- the notifier --


class Receiver(BaseHTTPRequestHandler):
    status = 200
    seen: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).seen.append((dict(self.headers.items()), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass
class Receiving:
    notifier: Notifier
    url: str
    answer: Callable[[int], None]  # what the receiver answers from now on


@pytest.fixture(params=["memory", "http"])
def receiving(request: pytest.FixtureRequest) -> Iterator[Receiving]:
    if request.param == "memory":
        memory = InMemoryNotifier()
        yield Receiving(
            memory, "http://receiver.invalid/hook", lambda s: setattr(memory, "status", s)
        )
        return
    handler = type("Handler", (Receiver,), {"seen": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sender = WebhookNotifier(secret="s3cret", timeout_s=5.0)
    port = server.server_address[1]
    yield Receiving(
        sender, f"http://127.0.0.1:{port}/hook", lambda s: setattr(handler, "status", s)
    )
    sender.close()
    server.shutdown()
    server.server_close()


def test_a_notifier_returns_the_receivers_status(receiving: Receiving) -> None:
    note = Notification(7, receiving.url, "state_change", b'{"event": "state_change"}')
    assert receiving.notifier.send(note) == 200
    receiving.answer(503)
    assert receiving.notifier.send(note) == 503


def test_an_unreachable_receiver_is_notify_failed() -> None:
    sender = WebhookNotifier(secret="", timeout_s=2.0)
    try:
        with pytest.raises(NotifyFailed):
            sender.send(Notification(1, "http://127.0.0.1:9/nothing-listens", "release", b"{}"))
    finally:
        sender.close()
    memory = InMemoryNotifier(status=None)
    with pytest.raises(NotifyFailed):
        memory.send(Notification(1, "http://x", "release", b"{}"))
    assert len(memory.sent) == 1


# -- the clock --


@pytest.mark.parametrize("clock", [SYSTEM_CLOCK, ManualClock()], ids=["system", "manual"])
def test_a_clock_never_goes_back(clock: Clock) -> None:
    wall, mono = clock.time(), clock.monotonic()
    if isinstance(clock, ManualClock):
        clock.advance(1.5)
        assert (clock.time() - wall, clock.monotonic() - mono) == (1.5, 1.5)
        with pytest.raises(ValueError, match="does not go back"):
            clock.advance(-1)
    assert clock.time() >= wall and clock.monotonic() >= mono
    assert abs(SYSTEM_CLOCK.time() - time.time()) < 60
