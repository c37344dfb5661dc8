"""Rules that span streams, checked inside the append's transaction after the tables changed.

Optimistic concurrency guards one stream; these guard what no single stream can: a destination
belongs to a live account, an account is deleted only with all of its destinations, and a
payload (or a replay) goes only to destinations that are live and enabled when it is recorded.
The idempotency projector refuses a key reused within 24 hours in the same way. (A live
account's email is unique through the partial unique index on ``accounts``.) They run on the
append path only, never while folding the log, which already satisfied them when written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore.records import Recorded
from projections.errors import AccountHasDestinations, AccountNotLive, DestinationsChanged


def check(conn: sqlite3.Connection, records: Sequence[Recorded]) -> None:
    """Raise an ``InvariantViolated`` if the appended records broke a rule."""
    for record in records:
        if record.type in ("DestinationCreated", "DestinationUpdated"):
            account_id = int(record.data["account_id"])
            live = conn.execute(
                "SELECT 1 FROM accounts WHERE id = ? AND deleted = 0", (account_id,)
            ).fetchone()
            if live is None:
                raise AccountNotLive(account_id)
        elif record.type == "AccountDeleted":
            account_id = int(record.data["account_id"])
            orphan = conn.execute(
                "SELECT 1 FROM destinations WHERE account_id = ? AND deleted = 0 LIMIT 1",
                (account_id,),
            ).fetchone()
            if orphan is not None:
                raise AccountHasDestinations(account_id)
        elif record.type in ("PayloadReceived", "DeliveryReplayRequested"):
            _check_targets(conn, record)


def _check_targets(conn: sqlite3.Connection, record: Recorded) -> None:
    """A payload, or its replay, goes only to destinations that are live and enabled."""
    ids = {int(i) for i in record.data["destination_ids"]}
    if not ids:
        return
    where = f"id IN ({','.join('?' * len(ids))}) AND deleted = 0 AND enabled = 1"
    params: tuple[int, ...] = tuple(ids)
    if "account_id" in record.data:
        where += " AND account_id = ?"
        params += (int(record.data["account_id"]),)
    (live,) = conn.execute(f"SELECT count(*) FROM destinations WHERE {where}", params).fetchone()
    if live != len(ids):
        raise DestinationsChanged(str(record.data["payload_id"]))
