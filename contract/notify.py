"""Telling the outside world: a :class:`Notifier` sends one notification to one receiver.

The manager queues a notification for every event in the transaction that saves the event
(the webhook outbox, :mod:`rollout.notify`) and hands due ones to a notifier:
:class:`rollout.notify.WebhookNotifier` posts them, signed; :class:`InMemoryNotifier` keeps
them (tests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

from contract.errors import Unavailable


@dataclass(frozen=True)
class Notification:
    delivery_id: int  # receivers de-duplicate on it: a retry has the same id
    url: str
    event: str  # state_change | release
    body: bytes  # JSON


class NotifyFailed(Unavailable):
    """The receiver could not be reached (no HTTP status)."""


class Notifier(Protocol):
    def send(self, notification: Notification) -> int:
        """Deliver ``notification``; return the receiver's HTTP status (2xx: delivered).
        Raise :class:`NotifyFailed` when there is no answer."""
        ...


class InMemoryNotifier:
    """Keeps what it is sent and answers ``status`` (or raises NotifyFailed when it is None)."""

    def __init__(self, status: int | None = 200) -> None:
        self.status = status
        self.sent: list[Notification] = []
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> int:
        with self._lock:
            self.sent.append(notification)
        if self.status is None:
            raise NotifyFailed(f"{notification.url}: no answer")
        return self.status
