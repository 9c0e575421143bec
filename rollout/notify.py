"""Webhooks: a signed POST to every configured URL on every event, retried, recorded.

:meth:`Webhooks.enqueue` writes one ``webhook_deliveries`` row per URL *in the caller's
transaction* (the one that saves the transition), so a notification exists exactly when its
state change does, even if the manager is killed right after (an outbox).
:meth:`Webhooks.deliver_due` (called beside the manager loop) hands due rows to a
:class:`~contract.notify.Notifier`: :class:`WebhookNotifier` POSTs the JSON payload with headers
``x-rollout-event``, ``x-rollout-delivery`` (the row id: receivers de-duplicate on it),
``x-rollout-timestamp`` and ``x-rollout-signature: sha256=<hex>``, the HMAC-SHA256 with the
shared secret over ``"<timestamp>.<body>"``. A 2xx reply marks the row ``delivered``; anything
else is retried after ``base_backoff_s * 2**(attempts-1)`` (at most ``max_backoff_s``) until
``max_attempts``, then ``failed``. Every attempt's status code or error stays on the row.

Configure with ``ROLLOUT_WEBHOOK_URLS`` (comma-separated) and ``ROLLOUT_WEBHOOK_SECRET``
(:class:`rollout.settings.Settings`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, select

from contract.clock import SYSTEM_CLOCK, Clock
from contract.notify import Notification, Notifier, NotifyFailed
from contract.sql.schema import webhook_deliveries
from rollout.store.records import dumps


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier:
    """Posts a notification, signed with ``secret``; waits at most ``timeout_s`` for a reply."""

    def __init__(self, secret: str, timeout_s: float = 2.0, clock: Clock = SYSTEM_CLOCK) -> None:
        self.secret = secret
        self.timeout_s = timeout_s
        self.clock = clock
        self._client = httpx.Client(timeout=timeout_s)

    def send(self, notification: Notification) -> int:
        timestamp = f"{self.clock.time():.3f}"
        headers = {
            "content-type": "application/json",
            "x-rollout-event": notification.event,
            "x-rollout-delivery": str(notification.delivery_id),
            "x-rollout-timestamp": timestamp,
            "x-rollout-signature": sign(self.secret, timestamp, notification.body),
        }
        try:
            reply = self._client.post(notification.url, content=notification.body, headers=headers)
        except httpx.HTTPError as exc:
            raise NotifyFailed(f"{type(exc).__name__}: {exc}") from exc
        return reply.status_code

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Delivery:
    id: int
    url: str
    event: str
    rollout_id: str | None
    payload: str
    status: str
    attempts: int
    next_attempt_at: float
    last_status_code: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


class Webhooks:
    def __init__(
        self,
        engine: Engine,
        urls: Sequence[str] = (),
        secret: str = "",
        *,
        max_attempts: int = 8,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        timeout_s: float = 2.0,
        clock: Clock = SYSTEM_CLOCK,
        notifier: Notifier | None = None,
    ) -> None:
        self.engine = engine
        self.urls = tuple(urls)
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.notifier = notifier or WebhookNotifier(secret, timeout_s, clock)

    def enqueue(self, conn: Connection, event: str, payload: Mapping[str, Any]) -> None:
        """One pending delivery per URL, inside the caller's transaction."""
        now = self.clock.time()
        body = dumps({"event": event, **payload})
        for url in self.urls:
            conn.execute(
                webhook_deliveries.insert().values(
                    url=url,
                    event=event,
                    rollout_id=payload.get("rollout_id"),
                    payload=body,
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )

    def deliver_due(self, limit: int = 50) -> int:
        """Attempt every due delivery (oldest first); returns how many were delivered."""
        query = (
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.status == "pending",
                webhook_deliveries.c.next_attempt_at <= self.clock.time(),
            )
            .order_by(webhook_deliveries.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            due = [Delivery(**row._mapping) for row in conn.execute(query)]
        return sum(self._attempt(delivery) for delivery in due)

    def _attempt(self, delivery: Delivery) -> int:
        note = Notification(delivery.id, delivery.url, delivery.event, delivery.payload.encode())
        code: int | None = None
        error: str | None = None
        try:
            code = self.notifier.send(note)
            if not 200 <= code < 300:
                error = f"HTTP {code}"
        except NotifyFailed as exc:
            error = str(exc)
        attempts = delivery.attempts + 1
        now = self.clock.time()
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": code,
            "last_error": error,
        }
        if error is None:
            values.update(status="delivered", delivered_at=now)
        elif attempts >= self.max_attempts:
            values.update(status="failed")
        else:
            backoff = min(self.max_backoff_s, self.base_backoff_s * 2 ** (attempts - 1))
            values.update(next_attempt_at=now + backoff)
        with self.engine.begin() as conn:
            conn.execute(
                webhook_deliveries.update()
                .where(webhook_deliveries.c.id == delivery.id)
                .values(**values)
            )
        return 1 if error is None else 0

    def deliveries(self, rollout_id: str | None = None) -> list[Delivery]:
        query = select(webhook_deliveries).order_by(webhook_deliveries.c.id)
        if rollout_id is not None:
            query = query.where(webhook_deliveries.c.rollout_id == rollout_id)
        with self.engine.connect() as conn:
            return [Delivery(**row._mapping) for row in conn.execute(query)]
