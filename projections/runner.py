"""Keeps the read-model tables caught up with the log.

At start-up every projector catches up from its checkpoint in pages of ``PAGE`` events, one
transaction per page. From then on the projectors run as a transaction hook of the store,
inside each append's own transaction: when ``append`` returns, the read models already show
it, so a command handler always reads its own writes. The invariant checks run in the same
hook, after the tables have changed, and can still refuse the append.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from eventstore.events import Event, decode, decode_json
from eventstore.records import Recorded
from eventstore.schema import statements
from eventstore.sqlite import SQLiteEventStore
from projections import invariants
from projections.folds import ReadModel, Stamp
from projections.tables import (
    ACCOUNT_COLUMNS,
    DDL,
    DELIVERY_COLUMNS,
    DESTINATION_COLUMNS,
    PROJECTORS,
    TABLES,
    account_from_row,
    delivery_from_row,
    destination_from_row,
)

PAGE: Final = 1000
_END: Final = 2**63 - 1


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in statements(DDL):
        conn.execute(statement)


def drop_tables(conn: sqlite3.Connection) -> None:
    for table in TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute("DELETE FROM checkpoints")


def checkpoints(conn: sqlite3.Connection) -> dict[str, int]:
    """Every projector's checkpoint (0 for one that has none yet), in one statement."""
    marks = {projector.name: 0 for projector in PROJECTORS}
    for name, position in conn.execute("SELECT name, position FROM checkpoints"):
        if name in marks:  # a row of a projector that no longer exists is left alone
            marks[name] = int(position)
    return marks


def _save_checkpoints(conn: sqlite3.Connection, marks: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO checkpoints (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        list(marks.items()),
    )


Folded = tuple[int, str, Event, Stamp]
"""A log entry ready to fold: position, type, event, stamp."""


def _decoded(records: Sequence[Recorded]) -> list[Folded]:
    """Each record with its event and stamp, decoded once for every projector."""
    return [(r.position, r.type, decode(r), Stamp.of(r)) for r in records]


def _fold(conn: sqlite3.Connection, batch: Sequence[Folded], marks: dict[str, int]) -> None:
    """Apply ``batch`` to every projector above its mark, then save the moved marks."""
    if not batch:
        return
    last = batch[-1][0]
    moved: dict[str, int] = {}
    for projector in PROJECTORS:
        done = marks[projector.name]
        if done >= last:
            continue
        changes = [
            (event, stamp)
            for position, kind, event, stamp in batch
            if position > done and kind in projector.types
        ]
        if changes:
            projector.apply(conn, changes)
        marks[projector.name] = moved[projector.name] = last
    if moved:
        _save_checkpoints(conn, moved)


def _read_after(
    conn: sqlite3.Connection, position: int, upto: int = _END, page: int = PAGE
) -> list[Folded]:
    """The next page of the log, decoded straight from its JSON (metadata is not needed)."""
    rows = conn.execute(
        "SELECT position, version, type, schema_version, data, recorded_at FROM events "
        "WHERE position > ? AND position <= ? ORDER BY position LIMIT ?",
        (position, upto, page),
    ).fetchall()
    return [
        (at, kind, decode_json(kind, schema, data), Stamp(at, version, recorded_at))
        for at, version, kind, schema, data, recorded_at in rows
    ]


def _catch_up(
    conn: sqlite3.Connection, marks: dict[str, int], upto: int = _END, page: int = PAGE
) -> int:
    """Fold one page after the lowest mark (read and decoded once for every projector)."""
    batch = _read_after(conn, min(marks.values()), upto, page)
    _fold(conn, batch, marks)
    return len(batch)


def catch_up_page(conn: sqlite3.Connection, page: int = PAGE) -> int:
    """Apply the next page of the log to every projector behind it; returns the page's size."""
    return _catch_up(conn, checkpoints(conn), page=page)


def on_append(conn: sqlite3.Connection, records: Sequence[Recorded]) -> None:
    """The store's transaction hook: fold the appended records, then check the invariants.

    Two statements of checkpoint work per append: one read of every mark, one write.
    """
    marks = checkpoints(conn)
    first = records[0].position
    # A projector behind the log (new, or rebuilt while serving) catches up first.
    while min(marks.values()) < first - 1 and _catch_up(conn, marks, first - 1):
        pass
    _fold(conn, _decoded(records), marks)
    invariants.check(conn, records)


class Projections:
    """The read models of one store: created, caught up, then kept current by the store."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store

    async def start(self) -> None:
        """Create the tables, catch up from the checkpoints, then follow every append."""
        await self.store.run_in_writer(create_tables)
        while await self.store.run_in_writer(catch_up_page):
            pass
        self.store.add_hook(on_append)

    async def rebuild(self) -> None:
        """Drop every read model and fold the whole log again (the store must be quiet)."""
        await self.store.run_in_writer(drop_tables)
        await self.store.run_in_writer(create_tables)
        while await self.store.run_in_writer(catch_up_page):
            pass

    async def snapshot(self) -> ReadModel:
        """Every row of every read model, as an in-memory ``ReadModel``."""
        return await self.store.query(load_read_model)


def load_read_model(conn: sqlite3.Connection) -> ReadModel:
    def rows(sql: str) -> list[Any]:
        return conn.execute(sql).fetchall()

    model = ReadModel()
    for row in rows(f"SELECT {ACCOUNT_COLUMNS} FROM accounts"):
        view = account_from_row(row)
        model.accounts[view.id] = view
    for row in rows(f"SELECT {DESTINATION_COLUMNS} FROM destinations"):
        destination = destination_from_row(row)
        model.destinations[destination.id] = destination
    for row in rows(f"SELECT {DELIVERY_COLUMNS} FROM deliveries"):
        delivery = delivery_from_row(row)
        model.deliveries[(delivery.payload_id, delivery.destination_id)] = delivery
    return model
