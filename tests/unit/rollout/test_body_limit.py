""":class:`rollout.api.BodyLimit`, the API's outermost layer, driven through ASGI calls on a
real FastAPI app: a declared length over the limit is refused before the app runs, and a body
without one (chunked) is counted as it arrives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import FastAPI, Request

from rollout.api import BodyLimit, BodyTooLarge, _too_large

LIMIT = 1000


def app() -> tuple[BodyLimit, list[int]]:
    inner = FastAPI()
    read: list[int] = []

    @inner.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        read.append(len(body))
        return {"bytes": len(body)}

    @inner.exception_handler(BodyTooLarge)
    async def _refused(request: Request, exc: BodyTooLarge) -> Any:
        return _too_large(LIMIT)

    return BodyLimit(inner, max_bytes=LIMIT), read


def call(
    asgi: BodyLimit, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, Any], int]:
    """The status, the JSON reply and how many chunks the app asked for."""
    sent: list[dict[str, Any]] = []
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= len(chunks):
            await asyncio.sleep(3600)  # the client never sends more
        pulled += 1
        return {
            "type": "http.request",
            "body": chunks[pulled - 1],
            "more_body": pulled < len(chunks),
        }

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(asgi(scope, receive, send), 5))  # type: ignore[arg-type]
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


def test_a_declared_length_over_the_limit_is_refused_before_the_app_reads() -> None:
    asgi, read = app()
    status, reply, pulled = call(asgi, [b"x" * 100], [(b"content-length", b"56300000")])
    assert (status, reply["error_code"], pulled, read) == (413, "body_too_large", 0, [])
    assert reply["message"] == f"the request body may be at most {LIMIT} bytes"


def test_a_chunked_body_is_refused_once_it_passes_the_limit() -> None:
    asgi, read = app()
    chunks = [b"x" * 300] * 100  # 30,000 bytes in all, no Content-Length
    status, reply, pulled = call(asgi, chunks, [(b"transfer-encoding", b"chunked")])
    assert (status, reply["error_code"], read) == (413, "body_too_large", [])
    assert pulled == 4  # the fourth chunk passed 1,000 bytes: nothing after it was asked for


def test_bodies_within_the_limit_pass_whole() -> None:
    asgi, read = app()
    status, reply, _pulled = call(asgi, [b"x" * 500, b"y" * 500], [])
    assert (status, reply, read) == (200, {"bytes": 1000}, [1000])
    status, reply, _pulled = call(asgi, [b"z" * 10], [(b"content-length", b"10")])
    assert (status, reply) == (200, {"bytes": 10})


def test_a_content_length_that_is_not_a_number_is_a_400() -> None:
    asgi, _read = app()
    status, reply, pulled = call(asgi, [b"{}"], [(b"content-length", b"-5")])
    assert (status, reply["error_code"], pulled) == (400, "invalid_request", 0)
    assert reply["message"] == "Content-Length: expected a number of bytes"
