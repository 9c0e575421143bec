"""Plan changes reach every router process, with no request failing meanwhile.

Two routers share one store (SQLite file, then PostgreSQL) and the demo's MLflow registry:
``python -m router --workers 2`` (uvicorn workers, metrics shared through a per-run
``PROMETHEUS_MULTIPROC_DIR``) and a one-process ``python -m router`` on another port. Client
threads keep both busy while the test rewrites the plan: a weight change, a new canary version
(loaded and warmed before it gets traffic) and the canary's removal. The test waits until each
of the three processes answers at the new generation (a reply's request id names its process);
how long that takes is a benchmark figure (``bench/timings.py``), not asserted here.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, DemoHome, wait_until
from contract.plans import TrafficPlan
from contract.sql.engine import open_engine
from contract.sql.plans import SqlPlanStore

ENV = "prod"
ROLLOUT = "r-multi"
PROCESSES = 3  # ``--workers 2`` on one port, a single process on the other
PROCESS_ID_CHARS = slice(8, 16)  # a request id's process part (router.request_ids)


@dataclass(frozen=True)
class Sent:
    port: int
    client: int  # which client thread sent it (each sends one request at a time)
    process: str  # which router process answered: its request-id prefix ("" if none did)
    status: int
    generation: int
    version: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "router", "--log-level", "warning", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Ready when 20 /readyz in a row say so (with two workers, both must be ready)."""
    streak = 0
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while streak < 20:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                ok = client.get("/readyz").status_code == 200
            except httpx.TransportError:
                ok = False
            streak = streak + 1 if ok else 0
            time.sleep(0.02 if ok else 0.1)


@pytest.fixture
def routers(
    home: DemoHome, store_url: str, tmp_path: Path
) -> Iterator[tuple[SqlPlanStore, list[int], Path]]:
    plans = SqlPlanStore(open_engine(store_url))
    plans.put(TrafficPlan(ENV, MODEL, "1", "2", 10, rollout_id=ROLLOUT))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_4242.db").write_bytes(b"stale, from a run long gone")
    env = {
        **os.environ,
        **home.settings.env(),
        "ROLLOUT_STORE_URL": store_url,
        "ROLLOUT_PLAN_POLL_S": "0.2",
        "ROLLOUT_LOG_FLUSH_S": "0.1",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    ports = [_free_port(), _free_port()]
    single_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    processes = [
        _start(["--port", str(ports[0]), "--workers", "2"], env, tmp_path / "workers.log"),
        _start(["--port", str(ports[1])], single_env, tmp_path / "single.log"),
    ]
    try:
        for port, process, log in zip(ports, processes, ("workers.log", "single.log"), strict=True):
            _ready(port, process, tmp_path / log)
        yield plans, ports, metrics_dir
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def _drive(
    port: int, client_id: int, body: dict[str, object], stop: threading.Event, out: list[Sent]
) -> None:
    # A connection per request, so the kernel spreads them over both workers of a port.
    headers = {"connection": "close"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as client:
        while not stop.is_set():
            try:
                reply = client.post(f"/v1/models/{MODEL}/invocations", json=body)
            except httpx.TransportError:
                out.append(Sent(port, client_id, "", 0, 0, ""))
                continue
            process = reply.headers.get("x-request-id", "")[PROCESS_ID_CHARS]
            generation = int(reply.headers.get("x-plan-generation", "0"))
            version = reply.headers.get("x-model-version", "")
            out.append(Sent(port, client_id, process, reply.status_code, generation, version))


def _serving(sent: list[Sent], generation: int, at_least: int = 1) -> dict[str, int]:
    """Replies at ``generation`` by router process, once each of the three answered at least
    ``at_least`` of them (else an empty dict, and the wait goes on)."""
    counts = Counter(s.process for s in list(sent) if s.generation == generation)
    return dict(counts) if len(counts) == PROCESSES and min(counts.values()) >= at_least else {}


def test_plan_changes_reach_every_process_without_failing_a_request(
    home: DemoHome, routers: tuple[SqlPlanStore, list[int], Path]
) -> None:
    plans, ports, metrics_dir = routers
    assert not (metrics_dir / "counter_4242.db").exists()  # stale files cleaned at start
    body = {"dataframe_records": home.data.serve_X.head(1).to_dict(orient="records")}
    sent: list[Sent] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_drive, args=(port, 2 * i + j, body, stop, sent))
        for i, port in enumerate(ports)
        for j in range(2)
    ]
    for thread in threads:
        thread.start()
    try:
        (first,) = plans.list(ENV)
        wait_until(lambda: _serving(sent, first.generation, 5), "every process serving")
        # 1. A weight change: every process serves it.
        weight = plans.put(TrafficPlan(ENV, MODEL, "1", "2", 50, rollout_id=ROLLOUT))
        wait_until(lambda: _serving(sent, weight.generation, 5), "the weight change everywhere")
        # 2. A new canary version: loaded and warmed first, so nothing fails while it loads.
        canary = plans.put(TrafficPlan(ENV, MODEL, "1", "3", 50, rollout_id=ROLLOUT))
        wait_until(lambda: _serving(sent, canary.generation, 10), "the new canary everywhere")
        # 3. The canary goes away: the baseline alone serves (and v2, v3 are unloaded).
        alone = plans.put(TrafficPlan(ENV, MODEL, "1"))
        wait_until(lambda: _serving(sent, alone.generation, 10), "the canary's removal everywhere")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    failed = [s for s in sent if s.status != 200]
    assert not failed, f"{len(failed)} of {len(sent)} requests failed: {failed[:5]}"
    assert len({s.process for s in sent}) == PROCESSES  # two workers and one single process
    served = {plan.generation: plan.versions for plan in (first, weight, canary, alone)}
    for client in range(len(threads)):
        for process in {s.process for s in sent}:
            seen = [s for s in sent if s.client == client and s.process == process]
            # A process applies each plan whole and never goes back to an older one.
            generations = [s.generation for s in seen]
            assert generations == sorted(generations), (client, process, generations)
            # Every reply comes from a version of the plan it names.
            assert all(s.version in served[s.generation] for s in seen), (client, process)
    served_v3 = [s for s in sent if s.version == "3"]
    assert served_v3 and all(s.generation == canary.generation for s in served_v3)
    final = [s for s in sent if s.generation == alone.generation]
    assert {s.version for s in final} == {"1"}

    # The two-worker router's metrics sum both workers: every request it answered is counted.
    with httpx.Client(base_url=f"http://127.0.0.1:{ports[0]}") as client:
        text = client.get("/metrics").text
    counted = sum(
        float(value)
        for labels, value in re.findall(r"rollout_router_requests_total\{([^}]*)\} (\S+)", text)
        if 'status="200"' in labels and f'model="{MODEL}"' in labels
    )
    assert counted == len([s for s in sent if s.port == ports[0]])
    assert "rollout_router_prediction_value_bucket{" in text
    pids = {p.name.split("_")[-1] for p in metrics_dir.glob("*.db")}
    assert len(pids) == 2  # one file set per worker
