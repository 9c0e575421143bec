"""Realistic client traffic for the demo: concurrent HTTP requests, delayed labels.

:class:`TrafficDriver` replays the demo's serving rows against the router with a few concurrent
clients (each request carries a sticky ``x-rollout-key`` for its user), remembers each
``x-request-id`` with the row's true label, and posts the labels to ``/v1/feedback`` in batches a
little later, as a labelling pipeline would, with the label writer's bearer token
(``<home>/secrets/label-writer.token``, :mod:`rollout.router_keys`).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pandas as pd


@dataclass
class TrafficStats:
    sent: int = 0
    failed: int = 0
    labels_sent: int = 0
    labels_refused: int = 0  # refused by the router (a wrong token, an expired request)
    by_arm: Counter[str] = field(default_factory=Counter)
    started_at: float = field(default_factory=time.monotonic)

    def rate(self) -> float:
        return self.sent / max(time.monotonic() - self.started_at, 1e-9)


class TrafficDriver:
    """Send requests from a background thread until :meth:`stop`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        rows: pd.DataFrame,
        labels: pd.Series,
        *,
        concurrency: int = 8,
        users: int = 5000,
        label_delay_s: float = 0.5,
        seed: int = 0,
        label_token: str | None = None,
    ) -> None:
        self.url = f"{base_url}/v1/models/{model}/invocations"
        self.feedback_url = f"{base_url}/v1/feedback"
        self.label_headers = {"authorization": f"Bearer {label_token}"} if label_token else {}
        self.columns = list(rows.columns)
        self.rows = rows.to_numpy().tolist()
        self.labels = [int(v) for v in labels]
        self.concurrency = concurrency
        self.users = users
        self.label_delay_s = label_delay_s
        self.random = random.Random(seed)
        self.stats = TrafficStats()
        self._stop = threading.Event()
        self._pending: list[tuple[float, str, int]] = []
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency + 2)
        async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
            workers = [self._client(client) for _ in range(self.concurrency)]
            await asyncio.gather(*workers, self._labeller(client))
            await self._send_labels(client, flush=True)

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            index = self.random.randrange(len(self.rows))
            user = self.random.randrange(self.users)
            payload = {"dataframe_split": {"columns": self.columns, "data": [self.rows[index]]}}
            try:
                reply = await client.post(
                    self.url, json=payload, headers={"x-rollout-key": f"user-{user}"}
                )
            except httpx.HTTPError:
                self.stats.failed += 1
                await asyncio.sleep(0.05)
                continue
            self.stats.sent += 1
            if reply.status_code != 200:
                self.stats.failed += 1
                continue
            self.stats.by_arm[reply.headers.get("x-arm", "?")] += 1
            self._pending.append(
                (time.monotonic(), reply.headers["x-request-id"], self.labels[index])
            )

    async def _labeller(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.25)
            await self._send_labels(client)

    async def _send_labels(self, client: httpx.AsyncClient, flush: bool = False) -> None:
        cutoff = time.monotonic() - (0.0 if flush else self.label_delay_s)
        due = [item for item in self._pending if item[0] <= cutoff]
        if not due:
            return
        self._pending = [item for item in self._pending if item[0] > cutoff]
        body = [{"request_id": request_id, "label": label} for _, request_id, label in due]
        try:
            reply = await client.post(self.feedback_url, json=body, headers=self.label_headers)
        except httpx.HTTPError:
            return
        if reply.status_code == 202:
            self.stats.labels_sent += len(body)
        else:
            self.stats.labels_refused += len(body)
