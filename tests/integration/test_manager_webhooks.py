"""Webhooks: every state change is posted, HMAC-signed, retried with backoff and recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import MODEL, DemoHome, wait_until
from contract.clock import ManualClock
from rollout.manager import Manager
from rollout.notify import Webhooks, sign
from rollout.spec import load_spec

SECRET = "s3cret"
# all traffic at once, nothing judged (not even the SLO at 100%): promoted at the first tick
INSTANT = {
    "strategy": {"canary": {"steps": [{"weight": 100, "min_requests": 0}]}},
    "analysis": {"gates": "none"},
}


class Receiver:
    """A loopback HTTP server that answers 500 to the first ``fail_first`` requests."""

    def __init__(self, fail_first: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                failing = len(receiver.received) <= receiver.fail_first
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(fail_first=1)
    yield receiver
    receiver.close()


def test_state_changes_are_signed_retried_and_recorded(home: DemoHome, receiver: Receiver) -> None:
    v1, v2 = home.versions["baseline"], home.versions["better"]
    manager = Manager(home.settings)
    clock = ManualClock()
    manager.webhooks = Webhooks(
        manager.engine, [receiver.url], SECRET, base_backoff_s=2.0, max_attempts=3, clock=clock
    )
    try:
        manager.start(MODEL, v1, "prod", actor="alice")
        rollout_id = manager.start(MODEL, v2, "prod", load_spec(INSTANT), actor="alice")
        assert manager.webhooks.deliver_due() == 5  # the first attempt of the first one fails
        clock.advance(1.0)
        assert manager.webhooks.deliver_due() == 0  # its backoff (2 s) has not passed
        clock.advance(1.0)
        assert manager.webhooks.deliver_due() == 1
        rows = manager.webhooks.deliveries()
        assert [(r.status, r.attempts) for r in rows] == [("delivered", 2)] + [("delivered", 1)] * 5
        assert (rows[0].last_status_code, rows[0].last_error) == (204, None)

        by_id: dict[str, dict[str, Any]] = {}
        for headers, body in receiver.received:
            expected = sign(SECRET, headers["x-rollout-timestamp"], body)
            assert headers["x-rollout-signature"] == expected
            by_id[headers["x-rollout-delivery"]] = json.loads(body)
        assert len(receiver.received) == 7 and len(by_id) == 6
        ours = [p for _, p in sorted(by_id.items(), key=lambda i: int(i[0]))
                if p["rollout_id"] == rollout_id]  # fmt: skip
        assert [p["to_state"] for p in ours] == [
            "pending",
            "verifying",
            "progressing",
            "promoting",
            "succeeded",
        ]
        assert {p["event"] for p in ours} == {"state_change"}
        assert ours[-1]["reason"].startswith(f"v{v2} promoted in prod")
    finally:
        manager.close()


def test_a_receiver_that_keeps_failing_ends_failed(home: DemoHome) -> None:
    receiver = Receiver(fail_first=10)
    manager = Manager(home.settings)
    clock = ManualClock()
    manager.webhooks = Webhooks(
        manager.engine, [receiver.url], SECRET, base_backoff_s=1.0, max_attempts=3, clock=clock
    )
    try:
        manager.start(MODEL, home.versions["baseline"], "prod", actor="alice")
        for _ in range(3):
            manager.webhooks.deliver_due()
            clock.advance(10.0)
        (row,) = manager.webhooks.deliveries()
        assert (row.status, row.attempts, row.last_error) == ("failed", 3, "HTTP 500")
        assert manager.webhooks.deliver_due() == 0
    finally:
        manager.close()
        receiver.close()


def test_a_hanging_receiver_never_delays_a_decision(home: DemoHome) -> None:
    """Deliveries run beside the tick loop: while a receiver holds a delivery open (an attempt
    may wait out its 120 s timeout), the loop still passes a step once its duration is over."""
    arrived, hang = threading.Event(), threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived.set()
            hang.wait(120.0)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    clock = ManualClock()
    manager = Manager(home.settings, clock=clock)
    # Longer than wait_until waits: a delivery made inline would hold the loop past it.
    manager.webhooks = Webhooks(manager.engine, [url], SECRET, timeout_s=120.0, clock=clock)
    stop = threading.Event()
    loop = threading.Thread(target=manager.run, kwargs={"interval_s": 0.05, "stop_event": stop})
    try:
        v1, v2 = home.versions["baseline"], home.versions["better"]
        manager.start(MODEL, v1, "prod", actor="alice")
        timed = {"strategy": {"canary": {"steps": [{"weight": 50, "min_requests": 0,
                                                    "min_duration": "30s"}]}},
                 "analysis": {"gates": "none"}}  # fmt: skip
        rollout_id = manager.start(MODEL, v2, "prod", load_spec(timed), actor="alice")
        assert len(manager.webhooks.deliveries()) >= 4  # queued, none answered yet
        loop.start()
        assert arrived.wait(60.0), "the loop posted no webhook"  # one is in flight, hanging
        assert manager.rollout(rollout_id).state == "progressing"  # its 30 s have not passed
        clock.advance(30.0)
        wait_until(
            lambda: manager.rollout(rollout_id).state,
            "the step to pass while the receiver hangs",
            until=lambda state: state == "succeeded",
        )
        assert not hang.is_set()
        assert all(row.status != "delivered" for row in manager.webhooks.deliveries())
    finally:
        stop.set()
        hang.set()
        loop.join(timeout=10)
        server.shutdown()
        server.server_close()
        manager.close()
    assert not loop.is_alive()
