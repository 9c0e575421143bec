"""The manager lease: of several managers on one store, only the holder acts.

One row of ``manager_leases`` per lease name. :meth:`Lease.acquire` takes the lease when it is
free or expired, or renews it when this holder has it, for ``ttl_s`` seconds; it returns whether
this holder has it now. A manager ticks only while it holds the lease, and every transition it
saves re-checks the lease *in the same transaction* (:meth:`Lease.fence`), so a manager that
stalled past its lease and lost it cannot write even one more transition: the transaction
fails with :class:`~rollout.errors.ConflictError` and rolls back. If the holder dies, another
manager takes over once ``expires_at`` has passed (``ttl_s``, 5 s by default).

Times are the managers' wall clocks, so managers on different machines need synchronised clocks
(NTP) to within a fraction of ``ttl_s``.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Connection, Engine, and_, or_, select
from sqlalchemy.exc import IntegrityError

from contract.clock import SYSTEM_CLOCK, Clock
from contract.sql.schema import manager_leases
from rollout.errors import ConflictError

DEFAULT_TTL_S = 5.0


def new_holder_id() -> str:
    """``host:pid:random``: unique per manager process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(
        self,
        engine: Engine,
        holder: str | None = None,
        *,
        name: str = "manager",
        ttl_s: float = DEFAULT_TTL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.engine = engine
        self.holder = holder or new_holder_id()
        self.name = name
        self.ttl_s = ttl_s
        self.clock = clock

    def acquire(self) -> bool:
        """Take or renew the lease; True when this holder has it until now + ttl_s."""
        now = self.clock.time()
        try:
            with self.engine.begin() as conn:
                return self._take(conn, now)
        except IntegrityError:
            return False  # another manager inserted the first row at the same moment

    def _take(self, conn: Connection, now: float) -> bool:
        row = conn.execute(
            select(manager_leases.c.holder).where(manager_leases.c.name == self.name)
        ).first()
        if row is None:
            conn.execute(
                manager_leases.insert().values(
                    name=self.name, holder=self.holder, acquired_at=now, expires_at=now + self.ttl_s
                )
            )
            return True
        values: dict[str, object] = {"holder": self.holder, "expires_at": now + self.ttl_s}
        if row.holder != self.holder:
            values["acquired_at"] = now
        result = conn.execute(
            manager_leases.update()
            .where(
                manager_leases.c.name == self.name,
                or_(
                    manager_leases.c.holder == self.holder,
                    manager_leases.c.expires_at < now,
                ),
            )
            .values(**values)
        )
        return result.rowcount == 1

    def fence(self, conn: Connection) -> None:
        """Inside a caller's transaction: fail unless this holder still has an unexpired lease
        (and extend it, so the write and the lease commit together)."""
        now = self.clock.time()
        result = conn.execute(
            manager_leases.update()
            .where(
                and_(
                    manager_leases.c.name == self.name,
                    manager_leases.c.holder == self.holder,
                    manager_leases.c.expires_at >= now,
                )
            )
            .values(expires_at=now + self.ttl_s)
        )
        if result.rowcount != 1:
            raise ConflictError(
                f"manager {self.holder} no longer holds the {self.name!r} lease; "
                "another manager is acting"
            )

    def release(self) -> None:
        """Give the lease up now (on a clean shutdown) so another manager need not wait."""
        with self.engine.begin() as conn:
            conn.execute(
                manager_leases.update()
                .where(manager_leases.c.name == self.name, manager_leases.c.holder == self.holder)
                .values(expires_at=self.clock.time() - 1.0)
            )

    def holder_now(self) -> tuple[str, float] | None:
        """(holder, expires_at) of the current row, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(manager_leases.c.holder, manager_leases.c.expires_at).where(
                    manager_leases.c.name == self.name
                )
            ).first()
        return (str(row[0]), float(row[1])) if row is not None else None
