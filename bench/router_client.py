"""A light HTTP/1.1 load generator for when ``wrk`` is not installed.

``python bench/router_client.py --port P --path /invocations --body-file F --connections 8
--duration 10`` keeps ``connections`` keep-alive connections busy (raw asyncio streams, one
request in flight per connection) and prints one JSON line: requests, errors, seconds and the
latencies' p50/p99 in milliseconds. With ``--rate R`` each connection sends on a fixed schedule
(R requests per second in all) instead of as fast as it can, and a latency counts from when its
request was due, so a stall shows as the wait of every request behind it. The benchmarks run
several of these processes at once, so the client is less likely to be the bottleneck on a small
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any


async def _connection(
    port: int,
    request: bytes,
    until: float,
    latencies: list[float],
    errors: list[int],
    every_s: float = 0.0,
    offset_s: float = 0.0,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    due = time.perf_counter() + offset_s
    try:
        while True:
            started = time.perf_counter()
            if every_s:
                if due > started:
                    await asyncio.sleep(due - started)
                started, due = due, due + every_s  # a latency counts from when it was due
            if started >= until:
                return
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _run(
    port: int, path: str, body: bytes, connections: int, duration: float, rate: float = 0.0
) -> dict[str, Any]:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    until = started + duration
    every_s = connections / rate if rate > 0 else 0.0
    await asyncio.gather(
        *(
            _connection(port, request, until, latencies, errors, every_s, i * every_s / connections)
            for i in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
        )

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "latencies_ms": [round(x * 1000, 3) for x in latencies[:: max(1, len(latencies) // 2000)]],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/invocations")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s in all (0: flat out)")
    args = parser.parse_args()
    with open(args.body_file, "rb") as handle:
        body = handle.read()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(
        _run(args.port, args.path, body, args.connections, args.duration, args.rate)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
