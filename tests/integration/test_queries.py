"""The read-model queries that run on every dispatch round use their indexes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from projections import queries as q
from projections.runner import create_tables


def _plans(conn: sqlite3.Connection, run: Callable[[sqlite3.Connection], Any]) -> list[str]:
    """The query plan of every SELECT that ``run`` makes."""
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    run(conn)
    conn.set_trace_callback(None)
    plans: list[str] = []
    for sql in statements:
        if sql.lstrip().upper().startswith("SELECT"):
            plans += [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    return plans


def test_due_queries_read_the_partial_index_without_sorting(tmp_path: Path) -> None:
    """What is due, and when the next thing is, come from the open-deliveries index in due
    order: no scan of every delivery and no sort of the backlog."""
    conn = sqlite3.connect(tmp_path / "q.sqlite3", isolation_level=None)
    conn.execute(
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream, version, type, "
        "schema_version, data, metadata, recorded_at)"
    )
    create_tables(conn)

    plans = _plans(
        conn,
        lambda c: (
            q.due_deliveries(c, now="2030-01-01T00:00:00+00:00", limit=64, busy=[3]),
            q.next_due_at(c),
        ),
    )

    assert plans
    assert all("deliveries_due" in plan for plan in plans), plans
    assert not any("TEMP B-TREE" in plan for plan in plans), plans
