"""Request ids the router issues: unguessable, signed, dated, and checked without the store.

An id is 64 lowercase hex characters (the prediction log's column width)::

    IIIIIIII PPPPPPPP CCCCCCCC RRRRRRRRRRRRRRRR TTTTTTTTTTTTTTTTTTTTTTTT
    issued   process  counter  64 random bits   keyed BLAKE2b tag, 96 bits
    (epoch s, hex)

``process`` is 32 random bits drawn once per router process (again in a forked child): it
tells which process served a request. ``counter`` counts the process's ids from a random start,
so one process's ids of one second are in increasing order: the prediction log's primary key
takes them as appends, not as inserts at random places in its index (measured on SQLite, 60,000
rows in batches of 200: 0.36 s for these ids, 1.06 s for ids random after the first 16
characters). The tag is BLAKE2b in its keyed (MAC) mode over everything before it, 96 bits
long, with a key only the routers hold (``ROLLOUT_REQUEST_ID_KEY`` or
``ROLLOUT_REQUEST_ID_KEY_FILE``; a key longer than BLAKE2b's 64 bytes is hashed to 64 first). So
an id cannot be guessed (64 bits drawn per request, and a tag no one without the key can
compute), and a label for an id no router with this key issued is
refused at once by :meth:`RequestIds.check` (:class:`~router.errors.UnknownRequest`, 404) without
asking the store and without waiting for the batched prediction-log writer. The issue time in
the id lets a label for a request older than ``label_max_age_s`` be refused the same way
(:class:`~router.errors.LabelExpired`, 410).

Several routers behind one balancer must share the key: a label may reach any of them. A router
started without a key draws one at random (and says so in its log): its ids verify only on that
process, until it restarts.

**Rotation.** The variable may hold several keys separated by commas, the file one per line
(blank lines and lines starting with ``#`` left out): the first signs new ids, every one verifies
(:func:`load_keys`). To replace a key without refusing a label: add the new key after the old
one on every router and restart them; then put it first and restart them again (they sign with
it and still verify the old ids); once ``label_max_age_s`` has passed, remove the old key.

Cost: issuing an id must never let go of the GIL, since the prediction-log writer thread is
waiting for it and the event loop would then wait up to the switch interval to get it back.
``hmac.digest`` and ``os.urandom`` both release it on every call (OpenSSL's one-shot HMAC and
the ``getrandom`` system call): with them, an id cost about 70 µs of the event loop's time under
load instead of 3 µs, and the router's throughput fell 10% (``bench/router.py``). So the tag is
``hashlib.blake2b`` (CPython's own code, which keeps the GIL for inputs under 2 KiB) and the
random bits come from a per-process pool of 4 KiB drawn from ``os.urandom`` (one system call
per 512 ids).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from contract.clock import Clock
from router.errors import LabelExpired, UnknownRequest

ID_CHARS: Final = 64
TAG_BYTES: Final = 12
MIN_KEY_BYTES: Final = 16
MAX_KEY_FILE_BYTES: Final = 4096
POOL_BYTES: Final = 4096  # random bytes drawn at once: 512 ids' worth
CLOCK_SKEW_S: Final = 300.0  # an id issued up to this far in the future (another router's clock)
_ID = re.compile(r"[0-9a-f]{64}")


_PROCESS = os.urandom(4).hex()
_COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))
_POOL: list[bytes] = []  # random bytes not yet used by this process, in 8-byte pieces


def _new_process() -> None:
    global _PROCESS, _COUNTER
    _PROCESS = os.urandom(4).hex()
    _COUNTER = itertools.count(int.from_bytes(os.urandom(4), "big"))
    _POOL.clear()  # a forked child must not reuse its parent's random bytes


def _random8() -> bytes:
    """8 random bytes from the process's pool, refilled from ``os.urandom`` when empty."""
    try:
        return _POOL.pop()
    except IndexError:
        block = os.urandom(POOL_BYTES)
        _POOL.extend(block[i : i + 8] for i in range(8, POOL_BYTES, 8))
        return block[:8]


os.register_at_fork(after_in_child=_new_process)  # a forked worker is another process


class RequestIds:
    """Issue request ids signed with ``key``; check them against ``key`` and the ``previous``
    keys (a rotation's old keys: they verify, never sign)."""

    def __init__(self, key: bytes, clock: Clock, previous: Sequence[bytes] = ()) -> None:
        self._key, *self._previous = [_mac_key(k) for k in (key, *previous)]
        self._clock = clock

    def issue(self) -> str:
        """A new id: the issue time, the process, its counter, 64 random bits and their tag."""
        issued = int(self._clock.time()) & 0xFFFFFFFF
        count = next(_COUNTER) & 0xFFFFFFFF
        body = f"{issued:08x}{_PROCESS}{count:08x}{_random8().hex()}"
        return body + self._tag(body)

    def _tag(self, body: str, key: bytes | None = None) -> str:
        mac = hashlib.blake2b(body.encode("ascii"), key=key or self._key, digest_size=TAG_BYTES)
        return mac.hexdigest()

    def _signed(self, body: str, tag: str) -> bool:
        """Whether ``tag`` is ``body``'s under the key or one of the previous keys."""
        if hmac.compare_digest(tag, self._tag(body)):
            return True
        return any(hmac.compare_digest(tag, self._tag(body, key)) for key in self._previous)

    def issued_at(self, request_id: str) -> float:
        """When ``request_id`` was issued (epoch seconds); 404 if no router with this key
        issued it."""
        if len(request_id) != ID_CHARS or _ID.fullmatch(request_id) is None:
            raise UnknownRequest(
                f"request_id {request_id[:20]!r}{'...' if len(request_id) > 20 else ''} is not "
                f"an id this router issued (expected the {ID_CHARS} hex characters of the "
                "reply's 'x-request-id')"
            )
        body, tag = request_id[:-24], request_id[-24:]
        if not self._signed(body, tag):
            raise UnknownRequest(
                f"request_id {request_id[:20]!r}... was not issued by a router with this key "
                "(its signature does not match)"
            )
        return float(int(body[:8], 16))

    def check(self, request_id: str, max_age_s: float) -> float:
        """The issue time of ``request_id`` if it is genuine (404) and young enough (410)."""
        issued = self.issued_at(request_id)
        age = self._clock.time() - issued
        if age > max_age_s:
            raise LabelExpired(
                f"request_id {request_id[:20]!r}... was issued {age:.0f} s ago; labels are "
                f"accepted for {max_age_s:.0f} s (ROLLOUT_LABEL_MAX_AGE_S)"
            )
        if age < -CLOCK_SKEW_S:
            raise UnknownRequest(
                f"request_id {request_id[:20]!r}... claims to be issued in the future"
            )
        return issued


def _mac_key(key: bytes) -> bytes:
    """``key`` as BLAKE2b takes it (longer than 64 bytes: hashed to 64 first)."""
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the request id key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return hashlib.blake2b(key).digest() if len(key) > hashlib.blake2b.MAX_KEY_SIZE else key


def load_key(key: str | None, key_file: str | None) -> bytes | None:
    """The key that signs (the first of :func:`load_keys`), or None when none is set."""
    keys = load_keys(key, key_file)
    return keys[0] if keys else None


def load_keys(key: str | None, key_file: str | None) -> list[bytes] | None:
    """The keys ``ROLLOUT_REQUEST_ID_KEY`` (comma-separated) or the file
    ``ROLLOUT_REQUEST_ID_KEY_FILE`` (one per line; blank lines and ``#`` lines left out)
    holds: the first signs, all verify.

    ``None`` when neither is set. Raises ``ValueError`` naming the variable when a key is
    too short, there is none, or the file cannot be read, is not a regular file, or is larger
    than 4 KiB.
    """
    if key:
        found = [part.strip().encode() for part in key.split(",")]
        source = "ROLLOUT_REQUEST_ID_KEY"
    elif key_file:
        path = Path(key_file)
        source = f"ROLLOUT_REQUEST_ID_KEY_FILE={key_file!r}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            raise ValueError(f"{source}: cannot open: {exc.strerror}") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError(f"{source}: not a regular file")
            data = os.read(fd, MAX_KEY_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_KEY_FILE_BYTES:
            raise ValueError(f"{source}: larger than {MAX_KEY_FILE_BYTES} bytes")
        lines = [line.strip() for line in data.splitlines()]
        found = [line for line in lines if line and not line.startswith(b"#")]
    else:
        return None
    if not found:
        raise ValueError(f"{source}: holds no key")
    for number, raw in enumerate(found, 1):
        if len(raw) < MIN_KEY_BYTES:
            which = "the key" if len(found) == 1 else f"key {number} of {len(found)}"
            raise ValueError(f"{source}: {which} has {len(raw)} bytes; at least {MIN_KEY_BYTES}")
    return found


def new_key() -> str:
    """A fresh random key (64 hex characters) for ``ROLLOUT_REQUEST_ID_KEY``."""
    return os.urandom(32).hex()
