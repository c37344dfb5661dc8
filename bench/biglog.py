"""A large log written straight into a fresh SQLite file, and an offline rebuild of it.

``python -m bench.biglog make --db PATH --events N`` appends, through the project's own
``SQLiteEventStore.append`` in batches of thousands of streams, an ``AccountCreated`` and a
``DestinationCreated`` followed by pairs of ``PayloadReceived`` and ``DeliverySucceeded``
(one payload delivered to the one destination), the shape of a running service's log. The
events are made with the real event types and ``encode``; only the payload id changes from
one pair to the next, so making a million events takes seconds. No read model is folded.

``python -m bench.biglog rebuild --db PATH`` folds every read model from scratch in-process
with ``projections.runner.Projections(store).rebuild()`` and prints
``{"events": n, "seconds": s}``, the time of the fold alone (not of opening the file).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Final

from api.ids import new_payload_id, token_digest
from eventstore.events import (
    AccountCreated,
    DeliverySucceeded,
    DestinationCreated,
    Metadata,
    PayloadReceived,
    account_stream,
    destination_stream,
    encode,
    payload_stream,
)
from eventstore.records import NO_STREAM, NewEvent, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from projections.runner import Projections, create_tables

BATCH: Final = 5000
"""Payload streams per ``append`` call (two events each)."""

BODY: Final = {"event": "order.created", "order_id": 1, "amount": 42.5, "currency": "EUR"}


def _templates() -> tuple[NewEvent, NewEvent]:
    """The two events of one delivered payload; their payload id is replaced per pair."""
    received = PayloadReceived(
        payload_id="0" * 26,
        account_id=1,
        body=BODY,
        destination_ids=[1],
        idempotency_key=None,
        body_sha256=hashlib.sha256(
            json.dumps(BODY, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest(),
    )
    delivered = DeliverySucceeded(
        payload_id="0" * 26,
        destination_id=1,
        attempt=1,
        status_code=200,
        duration_ms=1.5,
        response_excerpt="ok",
        trigger="scheduled",
    )
    return (
        encode(received, Metadata(actor="account:1", request_id="bench")),
        encode(delivered, Metadata(actor="system")),
    )


def _with_payload(template: NewEvent, payload_id: str) -> NewEvent:
    data: dict[str, Any] = dict(template.data)
    data["payload_id"] = payload_id
    return NewEvent(template.type, data, template.schema_version, template.metadata)


async def make(db: Path, events: int) -> int:
    """Write the log; returns how many events it holds (``events`` rounded to an even count
    of at least 4)."""
    admin = Metadata(actor="admin")
    account = AccountCreated(
        account_id=1,
        email="bench@example.com",
        account_name="bench",
        website=None,
        token_sha256=token_digest("bench-token"),
    )
    destination = DestinationCreated(
        destination_id=1,
        account_id=1,
        url="http://127.0.0.1:9/bench",
        http_method="POST",
        headers={},
    )
    received, delivered = _templates()
    pairs = max(1, (events - 2) // 2)
    async with SQLiteEventStore(db) as store:
        await store.append(
            [
                StreamAppend(account_stream(1), NO_STREAM, [encode(account, admin)]),
                StreamAppend(destination_stream(1), NO_STREAM, [encode(destination, admin)]),
            ]
        )
        written = 0
        while written < pairs:
            batch = []
            for _ in range(min(BATCH, pairs - written)):
                payload_id = new_payload_id()
                batch.append(
                    StreamAppend(
                        payload_stream(payload_id),
                        NO_STREAM,
                        [_with_payload(received, payload_id), _with_payload(delivered, payload_id)],
                    )
                )
            await store.append(batch)
            written += len(batch)
        return store.head


async def rebuild(db: Path) -> dict[str, float]:
    async with SQLiteEventStore(db) as store:
        # a log made by ``make`` has no read-model tables yet, and rebuild starts by dropping
        await store.run_in_writer(create_tables)
        started = time.perf_counter()
        await Projections(store).rebuild()
        seconds = time.perf_counter() - started
        return {"events": store.head, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.biglog", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    making = commands.add_parser("make", help="write a log of about N events")
    making.add_argument("--db", type=Path, required=True)
    making.add_argument("--events", type=int, required=True)
    folding = commands.add_parser("rebuild", help="fold every read model from scratch")
    folding.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "make":
        print(json.dumps({"events": asyncio.run(make(args.db, args.events))}))
    else:
        print(json.dumps(asyncio.run(rebuild(args.db))))


if __name__ == "__main__":
    main()
