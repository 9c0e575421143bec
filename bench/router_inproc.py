"""The router's own cost per request, in process: no sockets, no load generator, less noise.

``python bench/router_inproc.py [--calls N] [--rounds R]`` sets up what ``bench/router.py``
sets up (two registered versions, a 90/10 plan in a SQLite store, every request logged with
its features), builds the router's ASGI app as ``python -m router`` does (``create_app`` from
the environment, the same interpreter tuning) and the bare FastAPI endpoint of
``bench/router_bare.py``, runs the router's lifespan (plan poller, prediction-log writer), and
times ``N`` 1-row invocations through each app, rounds alternating. It prints, per app, the
best round's microseconds per call, then one JSON line: ``router_us``, ``bare_us``,
``router_over_bare_cost`` (the router's time per call over bare's).

Use it to find what the request path costs (issue 11's GIL releases showed here as 295 → 363
µs per call); ``bench/router.py`` stays the throughput figure over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _sibling(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _timed(apps: dict[str, App], payload: bytes, calls: int, rounds: int) -> dict[str, float]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/invocations", "raw_path": b"/invocations",
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for name, app in apps.items():  # until the router has loaded its plan and versions
        deadline = time.monotonic() + 120
        while True:
            statuses.clear()
            await app(dict(scope), receive, send)
            if statuses == [200]:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} never answered 200 (got {statuses})")
            await asyncio.sleep(0.2)
        for _ in range(1_000):  # warm-up
            await app(dict(scope), receive, send)
    best = {name: float("inf") for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            statuses.clear()
            started = time.perf_counter()
            for _ in range(calls):
                await app(dict(scope), receive, send)
            per_call = (time.perf_counter() - started) / calls * 1e6
            assert set(statuses) == {200}, f"{name}: {sorted(set(statuses))}"
            best[name] = min(best[name], per_call)
            await asyncio.sleep(0.3)  # let the log writer catch up between rounds
    return best


async def _with_lifespan(app: App, work: Callable[[], Awaitable[dict[str, float]]]) -> Any:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    await inbox.put({"type": "lifespan.startup"})
    lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}}
    task = asyncio.create_task(app(lifespan, inbox.get, send))
    await started.wait()
    try:
        return await work()
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000, help="calls per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="router-inproc-"))
    env, payload, model_dir = _sibling("router").setup(work)
    os.environ.update(env)
    os.environ.setdefault("ROLLOUT_REQUEST_ID_KEY", os.urandom(32).hex())
    from router.app import create_app
    from router.config import RouterConfig
    from router.server import tune_interpreter

    tune_interpreter()
    router_app = create_app(RouterConfig.from_env())
    bare_app = _sibling("router_bare").build(str(model_dir))
    apps: dict[str, App] = {"router": router_app, "bare": bare_app}
    best = asyncio.run(
        _with_lifespan(router_app, lambda: _timed(apps, payload, args.calls, args.rounds))
    )
    for name, per_call in best.items():
        print(f"{name:<8}{per_call:>10.1f} µs per call (best of {args.rounds} x {args.calls})")
    summary = {
        "router_us": round(best["router"], 1),
        "bare_us": round(best["bare"], 1),
        "router_over_bare_cost": round(best["router"] / best["bare"], 3),
        "calls": args.calls,
        "rounds": args.rounds,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
