"""The log's DDL, connection pragmas, and migrations tracked through ``PRAGMA user_version``.

The log is never migrated in place: a migration may add tables or indexes, never rewrite
events (old event shapes are upcast on read, see ``eventstore.events``).
"""

from __future__ import annotations

import sqlite3
from typing import Final

PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
)

_V1: Final = """
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    version        INTEGER NOT NULL CHECK (version >= 1),
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX events_type ON events (type, position);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: UPDATE is forbidden');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only: DELETE is forbidden');
END;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1,)
"""Migration N (1-based) brings ``user_version`` from N-1 to N."""


def configure(conn: sqlite3.Connection, *, synchronous: str) -> None:
    """Apply the per-connection pragmas; ``synchronous`` is ``FULL`` or ``NORMAL``."""
    for pragma in PRAGMAS:
        conn.execute(pragma)
    conn.execute(f"PRAGMA synchronous={synchronous}")


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the migrations the file lacks, each in its own transaction; returns the version."""
    (current,) = conn.execute("PRAGMA user_version").fetchone()
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        current = number
    return int(current)


def statements(script: str) -> list[str]:
    """Split a script into complete statements (triggers contain semicolons)."""
    found: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    return [statement for statement in found if statement]
