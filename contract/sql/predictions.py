"""The one writer of prediction records and labels into the store (routers and tests alike).

:class:`SqlPredictionSink` writes a batch of records as multi-row ``INSERT ... VALUES (...),
(...)`` statements of up to ``ROWS_PER_STATEMENT`` rows through the DB-API connection (sqlite3,
psycopg): one round trip into the database per statement. (SQLAlchemy Core's ``executemany``
processes every row's parameters in Python and steps the statement once per row, taking the
GIL back each time: a convoy with the request path, which wants the GIL too.)

:class:`SqlFeedbackSink` stores labels in one transaction, first write wins: a label for a
request labelled by another writer refuses the whole batch
(:class:`~contract.records.LabelConflict`); its own writer's new label replaces the old one,
which goes to ``feedback_history``; the same label again changes nothing. Two routers racing to
insert the first label of a request: the primary key lets one win, the other's batch is read
again and refused.

The manager reads both back (``rollout.store.predictions.PredictionLog``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from itertools import chain
from operator import attrgetter
from typing import Any, Final

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from contract.records import Feedback, LabelConflict, PredictionRecord
from contract.sql.schema import feedback, feedback_history, predictions

COLUMNS: Final = tuple(f.name for f in fields(PredictionRecord))
ROWS_PER_STATEMENT: Final = 200  # 13 columns x 200 rows stays under every driver's limits


class SqlPredictionSink:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._row_sql = "(" + ", ".join([marker] * len(COLUMNS)) + ")"
        self._prefix = f"INSERT INTO {predictions.name} ({', '.join(COLUMNS)}) VALUES "
        self._statements: dict[int, str] = {}
        self._row: Any = attrgetter(*COLUMNS)

    def _statement(self, n: int) -> str:
        sql = self._statements.get(n)
        if sql is None:
            sql = self._statements[n] = self._prefix + ", ".join([self._row_sql] * n)
        return sql

    def write(self, records: Sequence[PredictionRecord]) -> None:
        if not records:
            return
        rows = [self._row(r) for r in records]
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                for start in range(0, len(rows), ROWS_PER_STATEMENT):
                    chunk = rows[start : start + ROWS_PER_STATEMENT]
                    cursor.execute(self._statement(len(chunk)), list(chain.from_iterable(chunk)))
            finally:
                cursor.close()
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()


class SqlFeedbackSink:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        """Store every label or none (:class:`~contract.records.LabelConflict`)."""
        if not labels:
            return
        for attempt in range(2):
            try:
                self._add(labels)
                return
            except IntegrityError:
                if attempt:  # a concurrent writer inserted a row we did not see, twice
                    raise

    def _add(self, labels: Sequence[Feedback]) -> None:
        ids = [f.request_id for f in labels]
        with self.engine.begin() as conn:
            current: dict[str, tuple[str, float, str | None]] = {}
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(
                        feedback.c.request_id, feedback.c.label, feedback.c.ts, feedback.c.writer
                    ).where(feedback.c.request_id.in_(ids[start : start + 500]))
                ).all()
                current.update({r.request_id: (r.label, r.ts, r.writer) for r in rows})
            conflicts = [
                f.request_id
                for f in labels
                if f.request_id in current and current[f.request_id][2] != f.writer
            ]
            if conflicts:
                raise LabelConflict(conflicts)
            new_rows: list[dict[str, Any]] = []
            history: list[dict[str, Any]] = []
            for f in labels:
                label = json.dumps(f.label)
                old = current.get(f.request_id)
                if old is None:
                    new_rows.append(
                        {"request_id": f.request_id, "label": label, "ts": f.ts, "writer": f.writer}
                    )
                elif old[0] != label:
                    history.append(
                        {
                            "request_id": f.request_id,
                            "label": old[0],
                            "ts": old[1],
                            "writer": old[2],
                            "replaced_at": f.ts,
                        }
                    )
                    conn.execute(
                        update(feedback)
                        .where(feedback.c.request_id == f.request_id)
                        .values(label=label, ts=f.ts)
                    )
            if history:
                conn.execute(insert(feedback_history), history)
            if new_rows:
                conn.execute(insert(feedback), new_rows)
