"""The read models as SQLite tables in the log's own file, and the projectors that fill them.

Each projector owns its tables and one checkpoint row (the last log position it applied),
written in the same transaction as its rows: a crash never leaves half an event applied, and
applying an event at or below the checkpoint again is a no-op. Rows change only through the
pure folds of ``projections.folds``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from eventstore.events import (
    DeliveryReplayRequested,
    DestinationDeleted,
    DestinationDisabled,
    Event,
    PayloadReceived,
)
from projections.errors import DuplicateEmail, IdempotencyKeyTaken, ProjectionError
from projections.folds import (
    AccountEvent,
    AttemptEvent,
    DestinationEvent,
    Stamp,
    deliveries_of,
    evolve_account,
    evolve_delivery,
    evolve_destination,
    replay_delivery,
)
from projections.models import AccountView, DeliveryView, DestinationView

DDL: Final = """
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id           INTEGER PRIMARY KEY,
    email        TEXT    NOT NULL,
    account_name TEXT    NOT NULL,
    website      TEXT,
    token_sha256 TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS accounts_live_email
    ON accounts (email COLLATE NOCASE) WHERE deleted = 0;
CREATE UNIQUE INDEX IF NOT EXISTS accounts_live_token
    ON accounts (token_sha256) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS destinations (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL,
    url             TEXT    NOT NULL,
    http_method     TEXT    NOT NULL,
    headers         TEXT    NOT NULL,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    deleted         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS destinations_live_by_account
    ON destinations (account_id, id) WHERE deleted = 0;
CREATE TABLE IF NOT EXISTS deliveries (
    payload_id       TEXT    NOT NULL,
    destination_id   INTEGER NOT NULL,
    account_id       INTEGER NOT NULL,
    payload_position INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    received_at      TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    next_trigger     TEXT    NOT NULL,
    schedule_base    INTEGER NOT NULL,
    caused_by        INTEGER NOT NULL,
    PRIMARY KEY (payload_id, destination_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries (next_attempt_at) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS deliveries_open_by_destination
    ON deliveries (destination_id) WHERE status IN ('pending', 'retrying');
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, payload_id);
CREATE INDEX IF NOT EXISTS deliveries_by_account ON deliveries (account_id, payload_id);
CREATE INDEX IF NOT EXISTS deliveries_by_destination ON deliveries (destination_id, payload_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    account_id  INTEGER NOT NULL,
    key         TEXT    NOT NULL,
    payload_id  TEXT    NOT NULL,
    body_sha256 TEXT    NOT NULL,
    received_at TEXT    NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;
"""

IDEMPOTENCY_WINDOW: Final = timedelta(hours=24)

TABLES: Final = ("accounts", "destinations", "deliveries", "idempotency_keys")

ACCOUNT_COLUMNS: Final = (
    "id, email, account_name, website, token_sha256, created_at, updated_at, version, deleted"
)
DESTINATION_COLUMNS: Final = (
    "id, account_id, url, http_method, headers, enabled, disabled_reason, created_at, "
    "updated_at, version, deleted"
)
DELIVERY_COLUMNS: Final = (
    "payload_id, destination_id, account_id, payload_position, status, attempts, "
    "next_attempt_at, last_status_code, last_error, received_at, updated_at, next_trigger, "
    "schedule_base, caused_by"
)


def account_from_row(row: Sequence[Any]) -> AccountView:
    return AccountView(
        id=row[0],
        email=row[1],
        account_name=row[2],
        website=row[3],
        token_sha256=row[4],
        created_at=row[5],
        updated_at=row[6],
        version=row[7],
        deleted=bool(row[8]),
    )


def destination_from_row(row: Sequence[Any]) -> DestinationView:
    return DestinationView(
        id=row[0],
        account_id=row[1],
        url=row[2],
        http_method=row[3],
        headers=json.loads(row[4]),
        enabled=bool(row[5]),
        disabled_reason=row[6],
        created_at=row[7],
        updated_at=row[8],
        version=row[9],
        deleted=bool(row[10]),
    )


def delivery_from_row(row: Sequence[Any]) -> DeliveryView:
    return DeliveryView(*row)


def _upsert(table: str, columns: str, key: str) -> str:
    names = [name.strip() for name in columns.split(",")]
    keys = {name.strip() for name in key.split(",")}
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in keys)
    marks = ", ".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )


_UPSERT_ACCOUNT: Final = _upsert("accounts", ACCOUNT_COLUMNS, "id")
_UPSERT_DESTINATION: Final = _upsert("destinations", DESTINATION_COLUMNS, "id")
_UPSERT_DELIVERY: Final = _upsert("deliveries", DELIVERY_COLUMNS, "payload_id, destination_id")


Change = tuple[Event, Stamp]


class Projector(Protocol):
    """Keeps some tables equal to the log folded up to its checkpoint."""

    name: str
    types: frozenset[str]

    def apply(self, conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
        """Apply events (each of one of ``types``, in log order) in the caller's transaction."""
        ...


class _OneByOne:
    """A projector whose events are rare: each is applied on its own."""

    def apply(self, conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
        for event, stamp in changes:
            self.apply_one(conn, event, stamp)

    def apply_one(self, conn: sqlite3.Connection, event: Event, stamp: Stamp) -> None:
        raise NotImplementedError


class AccountsProjector(_OneByOne):
    name = "accounts"
    types = frozenset({"AccountCreated", "AccountUpdated", "AccountTokenRotated", "AccountDeleted"})

    def apply_one(self, conn: sqlite3.Connection, event: Event, stamp: Stamp) -> None:
        assert isinstance(event, AccountEvent)
        row = conn.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (event.account_id,)
        ).fetchone()
        view = evolve_account(account_from_row(row) if row else None, event, stamp)
        try:
            conn.execute(
                _UPSERT_ACCOUNT,
                (
                    view.id,
                    view.email,
                    view.account_name,
                    view.website,
                    view.token_sha256,
                    view.created_at,
                    view.updated_at,
                    view.version,
                    int(view.deleted),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateEmail(view.email) from exc


class DestinationsProjector(_OneByOne):
    name = "destinations"
    types = frozenset(
        {
            "DestinationCreated",
            "DestinationUpdated",
            "DestinationDisabled",
            "DestinationEnabled",
            "DestinationDeleted",
        }
    )

    def apply_one(self, conn: sqlite3.Connection, event: Event, stamp: Stamp) -> None:
        assert isinstance(event, DestinationEvent)
        row = conn.execute(
            f"SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?",
            (event.destination_id,),
        ).fetchone()
        view = evolve_destination(destination_from_row(row) if row else None, event, stamp)
        conn.execute(
            _UPSERT_DESTINATION,
            (
                view.id,
                view.account_id,
                view.url,
                view.http_method,
                json.dumps(dict(view.headers), separators=(",", ":")),
                int(view.enabled),
                view.disabled_reason,
                view.created_at,
                view.updated_at,
                view.version,
                int(view.deleted),
            ),
        )


class DeliveriesProjector:
    """Deliveries: one row per payload and destination, with its status and schedule."""

    name = "deliveries"
    types = frozenset(
        {
            "PayloadReceived",
            "DeliverySucceeded",
            "DeliveryAttemptFailed",
            "DeliveryFailed",
            "DeliveryReplayRequested",
            "DestinationDisabled",
            "DestinationDeleted",
        }
    )

    def apply(self, conn: sqlite3.Connection, changes: Sequence[Change]) -> None:
        """A unit of work: rows are read at most once and written once, at the end."""
        work: dict[tuple[str, int], DeliveryView] = {}

        def current(payload_id: str, destination_id: int) -> DeliveryView:
            key = (payload_id, destination_id)
            view = work.get(key)
            return view if view is not None else self._load(conn, *key)

        for event, stamp in changes:
            if isinstance(event, PayloadReceived):
                for view in deliveries_of(event, stamp):
                    work[(view.payload_id, view.destination_id)] = view
            elif isinstance(event, DeliveryReplayRequested):
                for destination_id in event.destination_ids:
                    view = replay_delivery(current(event.payload_id, destination_id), stamp)
                    work[(event.payload_id, destination_id)] = view
            elif isinstance(event, DestinationDisabled | DestinationDeleted):
                # The set-based form of folds.skip_delivery: one statement, whatever the
                # backlog; what this unit holds is written first so the statement sees it.
                self._save(conn, list(work.values()))
                work.clear()
                conn.execute(
                    "UPDATE deliveries SET status = 'skipped', next_attempt_at = NULL, "
                    "updated_at = ? WHERE destination_id = ? "
                    "AND status IN ('pending', 'retrying')",
                    (stamp.at, event.destination_id),
                )
            else:
                assert isinstance(event, AttemptEvent)
                view = evolve_delivery(
                    current(event.payload_id, event.destination_id), event, stamp
                )
                work[(event.payload_id, event.destination_id)] = view
        self._save(conn, list(work.values()))

    def _load(self, conn: sqlite3.Connection, payload_id: str, destination_id: int) -> DeliveryView:
        row = conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries "
            "WHERE payload_id = ? AND destination_id = ?",
            (payload_id, destination_id),
        ).fetchone()
        if row is None:
            raise ProjectionError(f"no delivery of payload {payload_id} to {destination_id}")
        return delivery_from_row(row)

    def _save(self, conn: sqlite3.Connection, views: Sequence[DeliveryView]) -> None:
        conn.executemany(
            _UPSERT_DELIVERY,
            [
                (
                    v.payload_id,
                    v.destination_id,
                    v.account_id,
                    v.payload_position,
                    v.status,
                    v.attempts,
                    v.next_attempt_at,
                    v.last_status_code,
                    v.last_error,
                    v.received_at,
                    v.updated_at,
                    v.next_trigger,
                    v.schedule_base,
                    v.caused_by,
                )
                for v in views
            ],
        )


class IdempotencyProjector(_OneByOne):
    """The ``Idempotency-Key`` of each payload, per account; a key is taken for 24 hours."""

    name = "idempotency_keys"
    types = frozenset({"PayloadReceived"})

    def apply_one(self, conn: sqlite3.Connection, event: Event, stamp: Stamp) -> None:
        assert isinstance(event, PayloadReceived)
        if event.idempotency_key is None:
            return
        row = conn.execute(
            "SELECT received_at FROM idempotency_keys WHERE account_id = ? AND key = ?",
            (event.account_id, event.idempotency_key),
        ).fetchone()
        now = datetime.fromisoformat(stamp.at)
        if row is not None and datetime.fromisoformat(row[0]) > now - IDEMPOTENCY_WINDOW:
            raise IdempotencyKeyTaken(event.account_id, event.idempotency_key)
        conn.execute(
            "INSERT INTO idempotency_keys (account_id, key, payload_id, body_sha256, received_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET "
            "payload_id = excluded.payload_id, body_sha256 = excluded.body_sha256, "
            "received_at = excluded.received_at",
            (
                event.account_id,
                event.idempotency_key,
                event.payload_id,
                event.body_sha256 or "",
                stamp.at,
            ),
        )


PROJECTORS: Final[tuple[Projector, ...]] = (
    AccountsProjector(),
    DestinationsProjector(),
    DeliveriesProjector(),
    IdempotencyProjector(),
)
