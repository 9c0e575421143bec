"""Timing benchmark: how soon the things the functional tests wait for happen.

``python bench/timings.py [--runs 10]``

The functional tests wait on conditions (a plan applied, a rollback serving, a record written, a
decision made, a lease taken over) and assert the outcome, not how long it took. This measures
those durations on the product's own paths, ``runs`` times each, in a temporary data directory
with the demo's model versions registered (as ``tests/conftest.py`` does), a SQLite store and
the production defaults (a router reads the plans every 0.5 s, the manager ticks every 0.5 s):

1. ``plan_to_every_router``: from a traffic plan's write to both of two router processes
   (``python -m router``) answering ``GET /v1/models`` with its generation (the slower of the
   two; polled every 5 ms);
2. ``rollback_call`` and ``rollback_to_all_traffic``: ``Manager.rollback`` of a canary at 50%,
   and from the call to the router applying the rolled-back plan (then 20 requests must all be
   answered by the baseline);
3. ``full_queue_submit`` and ``flush``: a request's ``PredictionLogWriter.submit`` while the
   store hangs and the queue is full (it drops and returns), and ``flush`` of one record when
   the writer would otherwise sleep an hour;
4. ``decision_with_hanging_webhook``: from a step's end (its ``min_duration``) to the
   ``Manager.run`` loop's promotion, while the webhook receiver holds every delivery open;
5. ``lease_takeover``: from a dead holder's lease expiry to a standby ``Manager.run`` (0.3 s
   lease, 0.02 s interval, as in the durability test) holding it.

Each write, rollback or rollout start waits first a seeded random 0 to 0.5 s, so that it lands at
any point of the routers' poll and the manager's tick cycles: without that pause each would come
just after the poll that saw the previous one, and every figure would be a full cycle.

Prints progress, a table of median and p90 milliseconds, then, last, one JSON line with them
(``<measure>_median_ms``, ``<measure>_p90_ms``) and the intervals they depend on.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contract.plans import TrafficPlan  # noqa: E402
from contract.records import InMemoryPredictionLog, PredictionRecord  # noqa: E402
from rollout.demo.models import load_data, register_versions  # noqa: E402
from rollout.lease import Lease  # noqa: E402
from rollout.manager import Manager  # noqa: E402
from rollout.notify import Webhooks  # noqa: E402
from rollout.registry import MlflowRegistry  # noqa: E402
from rollout.settings import Settings  # noqa: E402
from rollout.spec import load_spec  # noqa: E402
from rollout.up import ProcessSpec, Supervisor, free_port  # noqa: E402
from router.config import RouterConfig  # noqa: E402
from router.predlog import LogEntry, PredictionLogWriter  # noqa: E402

MODEL = "bc"
ENV = "prod"
POLL_S = 0.005  # how often the benchmark looks (its resolution)
WAIT_S = 60.0
HALF = {"strategy": {"canary": {"steps": [{"weight": 50, "min_requests": 10**6}]}}}
TIMED_S = 0.5  # the step duration of the webhook case
LEASE_TTL_S, LEASE_INTERVAL_S = 0.3, 0.02
MANAGER_INTERVAL_S = 0.5  # Manager.run's default, as `rollout manager` runs it
CYCLE_S = max(RouterConfig.plan_poll_s, MANAGER_INTERVAL_S)


def dephase(rng: random.Random) -> None:
    """Pause a random part of a poll cycle (see the module docstring)."""
    time.sleep(rng.uniform(0.0, CYCLE_S))


def p90(values: Sequence[float]) -> float:
    """The nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def until(check: Callable[[], bool], what: str) -> float:
    """Poll ``check`` every ``POLL_S``; the ``perf_counter`` at which it first held."""
    deadline = time.perf_counter() + WAIT_S
    while not check():
        if time.perf_counter() > deadline:
            raise SystemExit(f"waited {WAIT_S:g} s for {what}")
        time.sleep(POLL_S)
    return time.perf_counter()


def generation(client: httpx.Client) -> int | None:
    models = client.get("/v1/models").json()["models"]
    return models[0]["generation"] if models else None


def ready(client: httpx.Client) -> bool:
    return client.get("/readyz").status_code == 200


def applies(client: httpx.Client, wanted: int) -> Callable[[], bool]:
    """Whether the router answers ``GET /v1/models`` with plan generation ``wanted``."""
    return lambda: generation(client) == wanted


@contextmanager
def routers(settings: Settings, n: int, log_dir: Path) -> Iterator[list[httpx.Client]]:
    """``n`` router processes on the settings' store and registry, every plan loaded."""
    supervisor = Supervisor(settings, log_dir=log_dir)
    clients: list[httpx.Client] = []
    try:
        for i in range(n):
            port = free_port()
            argv = [sys.executable, "-m", "router", "--host", "127.0.0.1", "--port", str(port)]
            spec = ProcessSpec(f"router-{i}", argv, health_url=f"http://127.0.0.1:{port}/healthz")
            supervisor.start(spec, timeout_s=120)
            clients.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30))
        for client in clients:
            until(partial(ready, client), "a router to be ready")
        yield clients
    finally:
        for client in clients:
            client.close()
        supervisor.stop()


def plan_to_every_router(
    manager: Manager, clients: list[httpx.Client], versions: dict[str, str], runs: int
) -> list[float]:
    v1, v2 = versions["baseline"], versions["better"]
    seconds = []
    rng = random.Random(1)
    for run in range(runs):
        dephase(rng)
        weight = 10 if run % 2 else 50
        plan = manager.plans.put(TrafficPlan(ENV, MODEL, v1, v2, weight, rollout_id="bench"))
        written = time.perf_counter()
        applied = [
            until(applies(c, plan.generation), "a router to apply the plan") for c in clients
        ]
        seconds.append(max(applied) - written)
        progress(f"plan → every router {run + 1}/{runs}: {seconds[-1]:.3f} s")
    return seconds


def rollbacks(
    manager: Manager, client: httpx.Client, versions: dict[str, str], runs: int
) -> tuple[list[float], list[float]]:
    body = {"dataframe_split": load_data().serve_X.head(1).to_dict(orient="split", index=False)}
    calls, applied = [], []
    rng = random.Random(2)
    for run in range(runs):
        manager.start(MODEL, versions["better"], ENV, load_spec(HALF), actor="bench")
        canary = manager.plans.get(ENV, MODEL)
        assert canary is not None
        until(applies(client, canary.generation), "the canary's plan")
        dephase(rng)
        started = time.perf_counter()
        manager.rollback(MODEL, ENV, actor="bench", reason="benchmark")
        returned = time.perf_counter()
        plan = manager.plans.get(ENV, MODEL)
        assert plan is not None and plan.canary_version is None
        done = until(applies(client, plan.generation), "the rolled-back plan")
        served = {
            client.post(f"/v1/models/{MODEL}/invocations", json=body).headers["x-model-version"]
            for _ in range(20)
        }
        if served != {versions["baseline"]}:
            raise SystemExit(f"after the rollback the router served {served}")
        calls.append(returned - started)
        applied.append(done - started)
        progress(
            f"rollback {run + 1}/{runs}: call {calls[-1]:.3f} s, all traffic {applied[-1]:.3f} s"
        )
    return calls, applied


class HungStore:
    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, records: Sequence[PredictionRecord]) -> None:
        self.release.wait(WAIT_S)


def entry(n: int) -> LogEntry:
    return LogEntry(
        request_id=f"req-{n}",
        ts=time.time(),
        model=MODEL,
        version="1",
        arm="baseline",
        rollout_id=None,
        plan_generation=1,
        features=[{"a": 1.0}],
        output=[1],
        latency_ms=1.0,
        error=None,
        status_code=200,
    )


def prediction_log(runs: int) -> tuple[list[float], list[float]]:
    store = HungStore()
    writer = PredictionLogWriter(store, ENV, batch_size=1, queue_size=100)
    writer.start()
    try:
        writer.submit(entry(0))  # taken by the writer thread, which hangs in the store
        for n in range(1, 101):
            writer.submit(entry(n))
        submits = []
        for n in range(runs * 100):
            started = time.perf_counter()
            accepted = writer.submit(entry(n))
            submits.append(time.perf_counter() - started)
            if accepted:
                raise SystemExit("the queue was not full")
    finally:
        store.release.set()
        writer.close()
    flushes = []
    writer = PredictionLogWriter(InMemoryPredictionLog(), ENV, flush_s=3600.0)
    writer.start()
    try:
        for n in range(runs):
            writer.submit(entry(n))
            started = time.perf_counter()
            if not writer.flush(WAIT_S):
                raise SystemExit("flush timed out")
            flushes.append(time.perf_counter() - started)
    finally:
        writer.close()
    progress(f"prediction log: {len(submits)} submits, {len(flushes)} flushes")
    return submits, flushes


@contextmanager
def hanging_receiver(release: threading.Event) -> Iterator[str]:
    """A webhook receiver that answers no POST until ``release`` is set."""

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(WAIT_S)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def succeeded(manager: Manager, rollout_id: str) -> bool:
    return manager.rollout(rollout_id).state == "succeeded"


def decisions_with_hanging_webhook(
    settings: Settings, versions: dict[str, str], runs: int
) -> list[float]:
    timed = load_spec(
        {
            "strategy": {"canary": {"steps": [{"weight": 50, "min_requests": 0,
                                               "min_duration": f"{TIMED_S}s"}]}},
            "analysis": {"gates": []},
        }
    )  # fmt: skip
    seconds = []
    release = threading.Event()
    with hanging_receiver(release) as url:
        manager = Manager(settings)
        manager.webhooks = Webhooks(manager.engine, [url], "s3cret", timeout_s=WAIT_S)
        stop = threading.Event()
        kwargs = {"interval_s": MANAGER_INTERVAL_S, "stop_event": stop}
        loop = threading.Thread(target=manager.run, kwargs=kwargs, daemon=True)
        loop.start()
        try:
            rng = random.Random(3)
            for run in range(runs):
                dephase(rng)
                candidate = versions["better"] if run % 2 == 0 else versions["baseline"]
                rollout_id = manager.start(MODEL, candidate, ENV, timed, actor="bench")
                started_at = manager.rollout(rollout_id).step_started_at
                assert started_at is not None
                until(partial(succeeded, manager, rollout_id), "the promotion")
                done_at = time.time()  # the wall clock, as step_started_at
                seconds.append(done_at - (started_at + TIMED_S))
                progress(f"decision with a hanging webhook {run + 1}/{runs}: {seconds[-1]:.3f} s")
        finally:
            release.set()
            stop.set()
            loop.join(WAIT_S)
            manager.close()
    return seconds


def taken_over(dead: Lease) -> bool:
    held = dead.holder_now()
    return held is not None and held[0] != dead.holder


def lease_takeovers(settings: Settings, runs: int) -> list[float]:
    seconds = []
    for run in range(runs):
        standby = Manager(settings)
        dead = Lease(standby.engine, ttl_s=LEASE_TTL_S, holder="dead-holder")
        held = dead.holder_now() if dead.acquire() else None
        if held is None:
            raise SystemExit("the lease is held by someone else")
        expires_at = held[1]
        stop = threading.Event()
        kwargs = {"interval_s": LEASE_INTERVAL_S, "stop_event": stop, "lease_ttl_s": LEASE_TTL_S}
        loop = threading.Thread(target=standby.run, kwargs=kwargs, daemon=True)
        loop.start()
        try:
            until(partial(taken_over, dead), "the standby to take the lease")
            seconds.append(max(0.0, time.time() - expires_at))
        finally:
            stop.set()
            loop.join(WAIT_S)
            standby.close()
        progress(f"lease takeover {run + 1}/{runs}: {seconds[-1]:.3f} s after expiry")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="repetitions of each measure")
    args = parser.parse_args()
    runs = args.runs
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="timings-bench-") as tmp:
        # prod requires an approval by default; the promotions timed here go without one
        (Path(tmp) / "home").mkdir()
        (Path(tmp) / "home" / "environments.yaml").write_text(
            "environments: [dev, staging, {name: prod, approval: {required: false}}]\n"
        )
        settings = Settings.resolve(home=Path(tmp) / "home")
        settings.ensure_home()
        progress("registering the demo versions ...")
        registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
        versions = register_versions(registry, MODEL, load_data())
        manager = Manager(settings, registry=registry)
        try:
            manager.start(MODEL, versions["baseline"], ENV, actor="bench")
            progress("starting two routers ...")
            with routers(settings, 2, Path(tmp) / "logs") as clients:
                figures["plan_to_every_router"] = plan_to_every_router(
                    manager, clients, versions, runs
                )
                manager.plans.put(TrafficPlan(ENV, MODEL, versions["baseline"]))
                until(lambda: generation(clients[0]) is not None, "the baseline plan")
                calls, applied = rollbacks(manager, clients[0], versions, runs)
                figures["rollback_call"], figures["rollback_to_all_traffic"] = calls, applied
        finally:
            manager.close()
        figures["full_queue_submit"], figures["flush"] = prediction_log(runs)
        figures["decision_with_hanging_webhook"] = decisions_with_hanging_webhook(
            settings, versions, runs
        )
        figures["lease_takeover"] = lease_takeovers(settings, runs)
    summary: dict[str, Any] = {
        "runs": runs,
        "plan_poll_s": RouterConfig.plan_poll_s,
        "manager_interval_s": MANAGER_INTERVAL_S,
        "lease_ttl_s": LEASE_TTL_S,
    }
    print(f"\n{'what':<32}{'n':>6}{'median ms':>12}{'p90 ms':>12}")
    for name, values in figures.items():
        median, high = 1000 * statistics.median(values), 1000 * p90(values)
        print(f"{name:<32}{len(values):>6}{median:>12.3f}{high:>12.3f}")
        summary |= {f"{name}_median_ms": round(median, 3), f"{name}_p90_ms": round(high, 3)}
    print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
