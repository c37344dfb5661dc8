"""Rules that span streams, checked inside the append's transaction after the tables changed.

Optimistic concurrency guards one stream; these guard what no single stream can: a destination
belongs to a live account, an account is deleted only with all of its destinations, and a
payload fans out only to destinations that are live and enabled when it is recorded. (A live
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
        elif record.type == "PayloadReceived":
            _check_fan_out(conn, record)


def _check_fan_out(conn: sqlite3.Connection, record: Recorded) -> None:
    ids = [int(i) for i in record.data["destination_ids"]]
    if not ids:
        return
    marks = ",".join("?" * len(ids))
    (live,) = conn.execute(
        f"SELECT count(*) FROM destinations WHERE id IN ({marks}) "
        "AND account_id = ? AND deleted = 0 AND enabled = 1",
        (*ids, int(record.data["account_id"])),
    ).fetchone()
    if live != len(set(ids)):
        raise DestinationsChanged(str(record.data["payload_id"]))
