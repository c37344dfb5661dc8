"""Read-only queries on the read-model tables; run them through ``SQLiteEventStore.query``.

Pages are keyset-paginated on the id: ``after`` is the last id of the previous page, and a page
asks for one row more than ``limit`` so the caller knows whether another page follows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eventstore import codec
from projections.models import AccountView, DeliveryView, DestinationView
from projections.tables import (
    ACCOUNT_COLUMNS,
    DELIVERY_COLUMNS,
    DESTINATION_COLUMNS,
    account_from_row,
    delivery_from_row,
    destination_from_row,
)

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Page(Generic[V]):
    items: list[V]
    next_after: int | None


def _page(views: list[V], limit: int, key: int | None) -> Page[V]:
    if len(views) > limit:
        return Page(views[:limit], key)
    return Page(views, None)


def account(conn: sqlite3.Connection, account_id: int) -> AccountView | None:
    """The live account with this id, or None."""
    row = conn.execute(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ? AND deleted = 0", (account_id,)
    ).fetchone()
    return account_from_row(row) if row else None


def account_by_token(conn: sqlite3.Connection, token_sha256: str) -> AccountView | None:
    row = conn.execute(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE token_sha256 = ? AND deleted = 0",
        (token_sha256,),
    ).fetchone()
    return account_from_row(row) if row else None


def accounts_page(conn: sqlite3.Connection, *, after: int, limit: int) -> Page[AccountView]:
    rows = conn.execute(
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE deleted = 0 AND id > ? ORDER BY id LIMIT ?",
        (after, limit + 1),
    ).fetchall()
    views = [account_from_row(row) for row in rows]
    return _page(views, limit, views[limit - 1].id if len(views) > limit else None)


def next_account_id(conn: sqlite3.Connection) -> int:
    """One past the highest id ever used (deleted accounts keep theirs)."""
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM accounts").fetchone()
    return int(top) + 1


def destination(conn: sqlite3.Connection, destination_id: int) -> DestinationView | None:
    """The live (not deleted) destination with this id, enabled or not, or None."""
    row = conn.execute(
        f"SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ? AND deleted = 0",
        (destination_id,),
    ).fetchone()
    return destination_from_row(row) if row else None


def destinations_page(
    conn: sqlite3.Connection, *, account_id: int | None, after: int, limit: int
) -> Page[DestinationView]:
    where = "deleted = 0 AND id > ?"
    params: tuple[int, ...] = (after,)
    if account_id is not None:
        where += " AND account_id = ?"
        params += (account_id,)
    rows = conn.execute(
        f"SELECT {DESTINATION_COLUMNS} FROM destinations WHERE {where} ORDER BY id LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    views = [destination_from_row(row) for row in rows]
    return _page(views, limit, views[limit - 1].id if len(views) > limit else None)


def account_destinations(conn: sqlite3.Connection, account_id: int) -> list[DestinationView]:
    """Every live destination of the account, enabled or not, by id."""
    rows = conn.execute(
        f"SELECT {DESTINATION_COLUMNS} FROM destinations "
        "WHERE account_id = ? AND deleted = 0 ORDER BY id",
        (account_id,),
    ).fetchall()
    return [destination_from_row(row) for row in rows]


def next_destination_id(conn: sqlite3.Connection) -> int:
    (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM destinations").fetchone()
    return int(top) + 1


def due_deliveries(
    conn: sqlite3.Connection, *, now: str, limit: int, busy: Collection[int] = ()
) -> list[DeliveryView]:
    """Open deliveries due at ``now`` (ISO 8601 UTC), oldest first, leaving out the
    destinations in ``busy`` (those already at their concurrency limit)."""
    skip = ",".join("?" * len(busy))
    rows = conn.execute(
        # INDEXED BY: without statistics the planner prefers deliveries_by_status and sorts
        # the whole backlog; the partial index holds exactly the open deliveries, in due order.
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries INDEXED BY deliveries_due "
        "WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ? "
        f"AND destination_id NOT IN ({skip}) ORDER BY next_attempt_at LIMIT ?",
        (now, *busy, limit),
    ).fetchall()
    return [delivery_from_row(row) for row in rows]


def next_due_at(conn: sqlite3.Connection) -> str | None:
    """When the earliest open delivery is due, or None when nothing is open."""
    (due,) = conn.execute(
        "SELECT min(next_attempt_at) FROM deliveries INDEXED BY deliveries_due "
        "WHERE status IN ('pending', 'retrying')"
    ).fetchone()
    return str(due) if due is not None else None


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which deliveries: each field narrows; ``since``/``until`` bound the receipt time
    (ISO 8601 UTC, inclusive)."""

    status: str | None = None
    account_id: int | None = None
    destination_id: int | None = None
    since: str | None = None
    until: str | None = None


DeliveryCursor = tuple[str, int]
"""``(payload_id, destination_id)`` of the last delivery on the previous page."""


def deliveries_page(
    conn: sqlite3.Connection,
    where: DeliveryFilter,
    *,
    after: DeliveryCursor | None,
    limit: int,
) -> tuple[list[DeliveryView], DeliveryCursor | None]:
    """A page of deliveries in receipt order (payload ids are time-ordered)."""
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (
        ("status = ?", where.status),
        ("account_id = ?", where.account_id),
        ("destination_id = ?", where.destination_id),
        ("received_at >= ?", where.since),
        ("received_at <= ?", where.until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if after is not None:
        clauses.append("(payload_id, destination_id) > (?, ?)")
        params.extend(after)
    sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = conn.execute(
        f"{sql} ORDER BY payload_id, destination_id LIMIT ?", (*params, limit + 1)
    ).fetchall()
    views = [delivery_from_row(row) for row in rows]
    if len(views) <= limit:
        return views, None
    last = views[limit - 1]
    return views[:limit], (last.payload_id, last.destination_id)


def payload_deliveries(conn: sqlite3.Connection, payload_id: str) -> list[DeliveryView]:
    rows = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE payload_id = ? ORDER BY destination_id",
        (payload_id,),
    ).fetchall()
    return [delivery_from_row(row) for row in rows]


def destinations_by_id(
    conn: sqlite3.Connection, ids: Collection[int]
) -> dict[int, DestinationView | None]:
    """Each id's live destination, or None where it is deleted (or never existed)."""
    return {i: destination(conn, i) for i in ids}


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    payload_id: str
    body_sha256: str
    received_at: str


def idempotency_record(
    conn: sqlite3.Connection, account_id: int, key: str
) -> IdempotencyRecord | None:
    """What the account's last payload with this key was, whenever it came."""
    row = conn.execute(
        "SELECT payload_id, body_sha256, received_at FROM idempotency_keys "
        "WHERE account_id = ? AND key = ?",
        (account_id, key),
    ).fetchone()
    return IdempotencyRecord(*row) if row else None


def delivery(conn: sqlite3.Connection, payload_id: str, destination_id: int) -> DeliveryView | None:
    row = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE payload_id = ? AND destination_id = ?",
        (payload_id, destination_id),
    ).fetchone()
    return delivery_from_row(row) if row else None


def destination_ids_ever(conn: sqlite3.Connection, account_id: int) -> list[int]:
    """Every destination the account owns or owned before deleting it, by id."""
    rows = conn.execute(
        "SELECT id FROM destinations WHERE account_id = ? ORDER BY id", (account_id,)
    ).fetchall()
    return [int(row[0]) for row in rows]


def log_head(conn: sqlite3.Connection) -> int:
    """The last position of the log in this snapshot."""
    (head,) = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
    return int(head)


def payload_bodies(conn: sqlite3.Connection, positions: Collection[int]) -> dict[int, Any]:
    """The body of each ``PayloadReceived`` at these log positions, by position."""
    if not positions:
        return {}
    marks = ",".join("?" * len(positions))
    rows = conn.execute(
        f"SELECT position, data FROM events WHERE position IN ({marks})", tuple(positions)
    ).fetchall()
    return {int(position): codec.loads(data)["body"] for position, data in rows}
