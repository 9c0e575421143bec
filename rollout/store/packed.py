"""Compact JSON for what the store keeps of rows that retention will prune: floats to 7
significant digits (what a histogram or a KS test can tell apart), zlib, then base64 so it fits
a ``Text`` column on SQLite and PostgreSQL alike.

- :func:`pack` / :func:`unpack`: any JSON body;
- :func:`by_column` / :func:`from_columns`: feature rows (dicts) as ``{"columns", "rows"}``,
  each name once instead of once per row;
- :func:`insert_new`: an ``INSERT`` that leaves a row already kept (by another manager) as it
  is.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table
from sqlalchemy.dialects import postgresql, sqlite


def short(value: object) -> object:
    """A float to 7 significant digits; anything else as it is."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def pack(body: object) -> str:
    """``body`` as compact JSON, zlib-compressed and base64-encoded."""
    packed = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
    return base64.b64encode(packed).decode("ascii")


def unpack(text: str) -> Any:
    """What :func:`pack` packed (ValueError when ``text`` is not that)."""
    try:
        return json.loads(zlib.decompress(base64.b64decode(text, validate=True)))
    except (zlib.error, binascii.Error) as exc:
        raise ValueError(f"not a packed body: {exc}") from None


def by_column(rows: Sequence[Mapping[str, object]], max_columns: int) -> dict[str, Any]:
    """``rows`` as the first ``max_columns`` names found in them and each row's values of
    those (floats shortened; None where a row lacks one)."""
    columns = list(dict.fromkeys(str(name) for row in rows for name in row))[:max_columns]
    return {"columns": columns, "rows": [[short(row.get(c)) for c in columns] for row in rows]}


def from_columns(body: Mapping[str, Any]) -> list[dict[str, object]]:
    """The rows :func:`by_column` stored."""
    columns = [str(c) for c in body.get("columns", [])]
    return [dict(zip(columns, row, strict=False)) for row in body.get("rows", [])]


def insert_new(conn: Connection, table: Table) -> Insert:
    """``INSERT`` into ``table`` that skips a row whose key is taken (``ON CONFLICT DO
    NOTHING``, on SQLite and PostgreSQL): what another manager kept first stays."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()
