"""Dashboard benchmark: how long the rollout page and the overview take to render.

``python bench/dashboard.py [--batches 10] [--canary 500] [--baseline 4500]``

In a fresh data directory (SQLite store, the embedded default): registers the demo's versions,
starts a 10% canary that waits (a million requests before it may pass; error-rate and latency
gates), writes ``--batches`` batches of
``--canary`` canary and ``--baseline`` baseline requests (one feature row and output each)
through the contract's writer, the manager ticking after each (a look kept per grown window);
then, over real HTTP on loopback (uvicorn, one process), logs in a viewer and times
``GET /ui/rollouts/<id>`` with the pictures drawn (the picture cache cleared, 5 times), the
same page again with nothing new logged (10 times), and ``GET /ui/`` (10 times). Prints the
medians in milliseconds and the page's size as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

from contract.records import PredictionRecord
from contract.sql.predictions import SqlPredictionSink
from rollout.api import create_app
from rollout.demo.models import load_data, register_versions
from rollout.manager import Manager
from rollout.registry import MlflowRegistry
from rollout.settings import Settings
from rollout.spec import load_spec
from rollout.store.tokens import TokenStore
from rollout.tokens import issue
from rollout.web import rollout_page

MODEL = "bc"
SPEC = {
    "strategy": {"canary": {"steps": [{"weight": 10, "min_requests": 1_000_000}]}},
    "analysis": {"gates": [{"error_rate": {"max_increase": 0.2}}, "latency"]},
}


def batch(rollout_id: str, arm: str, version: str, n: int, shift: float) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            request_id=uuid.uuid4().hex, ts=time.time(), environment="prod", model=MODEL,
            version=version, arm=arm, rollout_id=rollout_id, plan_generation=1,
            features=json.dumps([{"x": (i % 17) / 17 + shift, "y": i % 3}]),
            output=json.dumps([i % 2]), latency_ms=10.0 + i % 7, error=None, status_code=200,
        )
        for i in range(n)
    ]  # fmt: skip


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--canary", type=int, default=500)
    parser.add_argument("--baseline", type=int, default=4500)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    (home / "environments.yaml").write_text(
        "environments: [dev, staging, {name: prod, approval: {required: false}}]\n"
    )
    resolved = Settings.resolve(home=home)
    settings = Settings(
        home=home, registry_uri=resolved.registry_uri, store_url=resolved.store_url,
        artifact_root=resolved.artifact_root, environments_file=home / "environments.yaml",
    )  # fmt: skip
    settings.ensure_home()
    registry = MlflowRegistry(settings.registry_uri, settings.artifact_root)
    versions = register_versions(registry, MODEL, load_data())
    manager = Manager(settings)
    manager.start(MODEL, versions["baseline"], "prod", actor="bench")
    rollout_id = manager.start(MODEL, versions["better"], "prod", load_spec(SPEC), actor="bench")
    sink = SqlPredictionSink(manager.engine)
    for _ in range(args.batches):
        sink.write(batch(rollout_id, "canary", versions["better"], args.canary, 0.5))
        sink.write(batch(rollout_id, "baseline", versions["baseline"], args.baseline, 0.0))
        manager.tick()
    store = TokenStore(manager.engine)
    token = issue(store, "bench", ["viewer"], None, "1d", "bench").token
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(manager, tokens={}, token_store=store), log_level="warning")
    )
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    page = f"/ui/rollouts/{rollout_id}"
    with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=60) as client:
        client.post("/ui/login", data={"token": token})
        drawn = []
        for _ in range(5):
            rollout_page._drawn.clear()
            drawn.append(timed(client, page))
        kept = [timed(client, page) for _ in range(10)]
        overview = [timed(client, "/ui/") for _ in range(10)]
        size = len(client.get(page).content)
    server.should_exit = True
    result = {
        "rows": manager.requests(rollout_id),
        "state": manager.rollout(rollout_id).state,
        "looks": len(manager.looks(rollout_id)),
        "rollout_page_drawn_ms": round(statistics.median(drawn)),
        "rollout_page_kept_ms": round(statistics.median(kept)),
        "overview_ms": round(statistics.median(overview)),
        "rollout_page_kib": round(size / 1024),
    }
    manager.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
