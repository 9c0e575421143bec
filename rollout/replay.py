"""``rollout replay``: send a file of labelled rows through the router, then their labels.

The traffic half of trying a rollout on one's own model, without writing a client:

- :func:`read_rows` reads a CSV, JSON-lines or Parquet file (at most :data:`MAX_FILE_BYTES` on
  disk and :data:`MAX_ROWS` rows, so a wrong file is refused, not read without end). With a label
  column, that column is taken out of the inputs and kept as each row's true label; a missing
  column is refused with the columns the file has.
- :func:`replay` waits (bounded) for the router's ``/healthz``, then sends ``requests`` requests
  (the rows in order, again from the first when the file is shorter) with a few concurrent
  clients, one row per request as ``dataframe_split``. No request carries a sticky key, so the
  router draws each one's arm at random: both arms see every row of the file (a key per row
  would give each arm its own rows, and rows repeated under the same arm are not independent
  evidence). A reply's
  ``x-request-id`` is remembered with the row's label (a row without one, an empty cell, is
  sent but not labelled, as when a label never comes); the labels go to ``/v1/feedback`` in
  batches ``label_delay_s`` after their replies, as a labelling pipeline would, with the label
  writer's bearer token (``<home>/secrets/label-writer.token`` by default, which ``rollout up``
  makes).
- :class:`ReplayResult` counts requests, failures, answers per version and arm, and labels
  accepted or refused; ``progress`` is called with it about once a second.

The command exits 0 when every request was answered and every label accepted, 1 otherwise (a
failing candidate answering 5xx is such a case: the counts say so), 2 when the file or the
router is unusable.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from rollout.errors import RolloutError

if TYPE_CHECKING:
    import pandas as pd

MAX_FILE_BYTES = 256 * 2**20
MAX_ROWS = 1_000_000
LABEL_BATCH = 1000  # the router's default label_max_items
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".parquet")


class ReplayError(RolloutError):
    """The rows file or the router cannot be used (exit 2)."""


@dataclass
class ReplayResult:
    requests: int  # to send
    sent: int = 0
    failed: int = 0  # no answer, or an answer other than 200
    by_version: Counter[str] = field(default_factory=Counter)  # "2 (canary)": answers
    labels_sent: int = 0
    labels_refused: int = 0
    first_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started_at

    @property
    def ok(self) -> bool:
        return self.sent == self.requests and not self.failed and not self.labels_refused

    def line(self) -> str:
        answered = ", ".join(f"v{k} {n}" for k, n in sorted(self.by_version.items())) or "none"
        return (
            f"{self.sent}/{self.requests} requests in {self.seconds:.0f} s "
            f"(answered: {answered}; {self.failed} failed), "
            f"{self.labels_sent} labels accepted, {self.labels_refused} refused"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "sent": self.sent,
            "failed": self.failed,
            "answered_by_version": dict(sorted(self.by_version.items())),
            "labels_sent": self.labels_sent,
            "labels_refused": self.labels_refused,
            "first_error": self.first_error,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


def read_rows(path: Path, label: str | None) -> tuple[pd.DataFrame, list[Any] | None]:
    """The inputs and, with ``label``, the labels (that column, taken out of the inputs)."""
    import pandas as pd

    if not path.is_file():
        raise ReplayError(f"rows: no file at {path}")
    if path.suffix.lower() not in SUFFIXES:
        raise ReplayError(f"rows: expected a {', '.join(SUFFIXES)} file, got {path.name!r}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ReplayError(
            f"rows: {path} is {size / 2**20:.0f} MiB; at most {MAX_FILE_BYTES // 2**20} MiB"
        )
    try:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            frame = pd.read_csv(path, nrows=MAX_ROWS + 1)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, nrows=MAX_ROWS + 1)
    except ImportError as exc:  # Parquet without pyarrow
        raise ReplayError(f"rows: cannot read {path.name}: {exc}") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ReplayError(f"rows: {path.name} is not a readable table: {exc}") from None
    if len(frame) > MAX_ROWS:
        raise ReplayError(f"rows: more than {MAX_ROWS:,} rows in {path.name}")
    if frame.empty:
        raise ReplayError(f"rows: {path.name} holds no rows")
    if label is None:
        return frame, None
    if label not in frame.columns:
        have = ", ".join(map(str, frame.columns))
        raise ReplayError(f"--label: no column {label!r} in {path.name}; it has {have}")
    return frame.drop(columns=[label]), _values(frame[label])


def _cells(frame: pd.DataFrame) -> list[list[Any]]:
    """Rows as lists of JSON-ready Python values (missing cells as null)."""
    columns = [_values(frame[c]) for c in frame]
    return [list(row) for row in zip(*columns, strict=True)]


def _values(column: pd.Series) -> list[Any]:
    """A column's cells as Python scalars, a missing one as None."""
    values: list[Any] = column.astype(object).where(column.notna(), None).tolist()
    return values


async def _wait_healthy(client: httpx.AsyncClient, router: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while True:
        try:
            reply = await client.get(f"{router}/healthz")
            if reply.status_code == 200:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if time.monotonic() >= deadline:
            raise ReplayError(
                f"--router: {router}/healthz did not answer 200 in {wait_s:g} s ({last})"
            )
        await asyncio.sleep(0.5)


async def replay(
    router: str,
    model: str,
    frame: pd.DataFrame,
    labels: list[Any] | None,
    *,
    requests: int,
    label_token: str | None,
    concurrency: int = 4,
    label_delay_s: float = 0.5,
    wait_s: float = 60.0,
    progress: Callable[[ReplayResult], None] | None = None,
) -> ReplayResult:
    """Send ``requests`` requests of ``frame``'s rows to ``model`` on ``router``, then labels."""
    router = router.rstrip("/")
    url = f"{router}/v1/models/{model}/invocations"
    columns = [str(c) for c in frame.columns]
    rows = _cells(frame)
    result = ReplayResult(requests=requests)
    pending: list[tuple[float, str, Any]] = []
    label_headers = {"authorization": f"Bearer {label_token}"} if label_token else {}
    next_index = 0

    def note_error(text: str) -> None:
        if result.first_error is None:
            result.first_error = text

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            row = i % len(rows)
            body = {"dataframe_split": {"columns": columns, "data": [rows[row]]}}
            try:
                reply = await client.post(url, json=body)
            except httpx.HTTPError as exc:
                result.sent += 1
                result.failed += 1
                note_error(f"request {i}: {type(exc).__name__}")
                continue
            result.sent += 1
            if reply.status_code != 200:
                result.failed += 1
                note_error(f"request {i}: HTTP {reply.status_code} {reply.text[:200]}")
                continue
            version = reply.headers.get("x-model-version", "?")
            result.by_version[f"{version} ({reply.headers.get('x-arm', '?')})"] += 1
            label = labels[row] if labels is not None else None
            if label is not None and "x-request-id" in reply.headers:
                pending.append((time.monotonic(), reply.headers["x-request-id"], label))

    async def send_labels(client: httpx.AsyncClient, flush: bool) -> None:
        nonlocal pending
        cutoff = time.monotonic() - (0.0 if flush else label_delay_s)
        k = 0
        while k < len(pending) and pending[k][0] <= cutoff:  # appended in time order
            k += 1
        due, pending = pending[:k], pending[k:]
        for start in range(0, len(due), LABEL_BATCH):
            body = [
                {"request_id": rid, "label": value}
                for _, rid, value in due[start : start + LABEL_BATCH]
            ]
            try:
                reply = await client.post(f"{router}/v1/feedback", json=body, headers=label_headers)
            except httpx.HTTPError as exc:
                result.labels_refused += len(body)
                note_error(f"labels: {type(exc).__name__}")
                continue
            if reply.status_code == 202:
                result.labels_sent += len(body)
            else:
                result.labels_refused += len(body)
                note_error(f"labels: HTTP {reply.status_code} {reply.text[:200]}")

    async def labeller(client: httpx.AsyncClient, clients: asyncio.Future[Any]) -> None:
        last_progress = time.monotonic()
        while not clients.done():
            await asyncio.sleep(0.25)
            await send_labels(client, flush=False)
            if progress is not None and time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                progress(result)
        await send_labels(client, flush=True)

    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        await _wait_healthy(client, router, wait_s)
        result.started_at = time.monotonic()
        clients = asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        await asyncio.gather(clients, labeller(client, clients))
    if progress is not None:
        progress(result)
    return result


def label_token_from(path: Path) -> str:
    """The label writer's token in ``path`` (ReplayError naming the file when unreadable)."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ReplayError(
            f"--label-token-file: cannot read {path} ({exc.strerror}); `rollout up` writes "
            "the label writer's token to <home>/secrets/label-writer.token"
        ) from None
    if not token:
        raise ReplayError(f"--label-token-file: {path} is empty")
    return token
