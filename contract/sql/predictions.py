"""The one writer of prediction records and labels into the store (routers and tests alike).

:class:`SqlPredictionSink` writes a batch of records as multi-row ``INSERT ... VALUES (...),
(...)`` statements of up to ``ROWS_PER_STATEMENT`` rows through the DB-API connection (sqlite3,
psycopg): one round trip into the database per statement. (SQLAlchemy Core's ``executemany``
processes every row's parameters in Python and steps the statement once per row, taking the
GIL back each time: a convoy with the request path, which wants the GIL too.)

:class:`SqlFeedbackSink` stores labels; a second label for the same request id replaces the
first (an upsert on ``feedback.request_id``).

The manager reads both back (``rollout.store.predictions.PredictionLog``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from itertools import chain
from operator import attrgetter
from typing import Any, Final

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from contract.records import Feedback, PredictionRecord
from contract.sql.schema import feedback, predictions

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
        insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(feedback)
        self._upsert = statement.on_conflict_do_update(
            index_elements=["request_id"],
            set_={"label": statement.excluded.label, "ts": statement.excluded.ts},
        )

    def add_feedback(self, labels: Sequence[Feedback]) -> None:
        """Store labels; a second label for the same request id replaces the first."""
        if not labels:
            return
        rows = [
            {"request_id": f.request_id, "label": json.dumps(f.label), "ts": f.ts} for f in labels
        ]
        with self.engine.begin() as conn:
            conn.execute(self._upsert, rows)
