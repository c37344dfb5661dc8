"""Deliveries, the attempt log, and replay: ``/api/payloads/`` and ``/api/deliveries/``."""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api import commands as cmd
from api.errors import NotFound, ValidationFailed
from api.http import (
    COMMANDS,
    STORE,
    metadata,
    query_int,
    read_object,
    respond,
)
from eventstore.events import payload_stream
from eventstore.records import Recorded
from projections import queries as q
from projections.models import DeliveryView, DestinationView

STATUSES: Final = ("pending", "retrying", "delivered", "failed", "skipped")
_CURSOR: Final = re.compile(r"^([0-9A-Z]{26})\.(\d{1,18})$")
_ATTEMPTS: Final = frozenset({"DeliverySucceeded", "DeliveryAttemptFailed", "DeliveryFailed"})
REPLAY_PAGE: Final = 500


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": field, "message": message, "type": field}])


def _instant(field: str, raw: object) -> str | None:
    """An ISO 8601 time as the log writes it (UTC, microseconds); naive means UTC."""
    if raw is None or raw == "":
        return None
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise _invalid(field, f"{field} must be an ISO 8601 time") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _positive(field: str, raw: object) -> int | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    if isinstance(raw, str) and raw.isdigit() and int(raw) > 0:
        return int(raw)
    raise _invalid(field, f"{field} must be a positive integer")


def _filter(source: Mapping[str, Any]) -> q.DeliveryFilter:
    """The filters shared by the list and the bulk replay, from a query or a JSON body."""
    status = source.get("status") or None
    if status is not None and status not in STATUSES:
        raise _invalid("status", f"status must be one of {', '.join(STATUSES)}")
    return q.DeliveryFilter(
        status=status,
        account_id=_positive("account", source.get("account")),
        destination_id=_positive("destination", source.get("destination")),
        since=_instant("since", source.get("since")),
        until=_instant("until", source.get("until")),
    )


def _cursor(raw: object) -> q.DeliveryCursor | None:
    if raw is None or raw == "":
        return None
    match = _CURSOR.match(str(raw))
    if match is None:
        raise _invalid("after", "after must be a next_after value of a previous page")
    return match.group(1), int(match.group(2))


def _next_after(cursor: q.DeliveryCursor | None) -> str | None:
    return None if cursor is None else f"{cursor[0]}.{cursor[1]}"


def delivery_body(view: DeliveryView) -> dict[str, Any]:
    return {
        "payload_id": view.payload_id,
        "destination_id": view.destination_id,
        "account": view.account_id,
        "status": view.status,
        "attempts": view.attempts,
        "next_attempt_at": view.next_attempt_at,
        "last_status_code": view.last_status_code,
        "last_error": view.last_error,
        "received_at": view.received_at,
        "updated_at": view.updated_at,
    }


def attempt_body(record: Recorded) -> dict[str, Any]:
    data = record.data
    return {
        "attempt": data["attempt"],
        "outcome": record.type,
        "status_code": data["status_code"],
        "error": data.get("error"),
        "duration_ms": data["duration_ms"],
        "response_excerpt": data["response_excerpt"],
        "trigger": data["trigger"],
        "next_attempt_at": data.get("next_attempt_at"),
        "recorded_at": record.recorded_at,
    }


async def list_deliveries(request: web.Request) -> web.Response:
    where = _filter(request.query)
    after = _cursor(request.query.get("after"))
    limit = query_int(request, "limit", 100, low=1, high=1000)
    assert limit is not None
    views, cursor = await request.app[STORE].query(
        lambda conn: q.deliveries_page(conn, where, after=after, limit=limit)
    )
    return respond({"items": [delivery_body(v) for v in views], "next_after": _next_after(cursor)})


async def _payload_events(request: web.Request, payload_id: str) -> list[Recorded]:
    records = await request.app[STORE].read_stream(payload_stream(payload_id))
    if not records:
        raise NotFound(f"payload {payload_id} not found")
    return records


async def get_payload(request: web.Request) -> web.Response:
    """The payload, its body, and per destination its status and every attempt."""
    payload_id = request.match_info["payload_id"]
    records = await _payload_events(request, payload_id)
    received = records[0]
    views = await request.app[STORE].query(lambda c: q.payload_deliveries(c, payload_id))
    attempts: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        if record.type in _ATTEMPTS:
            attempts.setdefault(int(record.data["destination_id"]), []).append(attempt_body(record))
    return respond(
        {
            "payload_id": payload_id,
            "account": received.data["account_id"],
            "received_at": received.recorded_at,
            "body": received.data["body"],
            "deliveries": [
                {**delivery_body(v), "attempt_log": attempts.get(v.destination_id, [])}
                for v in views
            ],
        }
    )


ReplayState = tuple[list[DeliveryView], dict[int, DestinationView | None]]


async def _replay(request: web.Request, deliveries: Sequence[DeliveryView]) -> cmd.ReplayPlan:
    """Append the replay of ``deliveries``, deciding on their state as it is now."""
    keys = [(d.payload_id, d.destination_id) for d in deliveries]
    plan = cmd.ReplayPlan([], 0, [])

    def load(conn: sqlite3.Connection) -> ReplayState:
        fresh = [view for key in keys if (view := q.delivery(conn, *key)) is not None]
        return fresh, q.destinations_by_id(conn, {d.destination_id for d in fresh})

    def decide(state: ReplayState) -> list[cmd.Change]:
        nonlocal plan
        plan = cmd.decide_replay(*state)
        return plan.changes

    await request.app[COMMANDS].run(load, decide, metadata(request))
    return plan


async def replay_payload(request: web.Request) -> web.Response:
    """Replay one payload to all of its destinations, or to the one named in the body."""
    payload_id = request.match_info["payload_id"]
    body = await read_object(request, optional=True)
    only = _positive("destination", body.get("destination"))
    await _payload_events(request, payload_id)
    views = await request.app[STORE].query(lambda c: q.payload_deliveries(c, payload_id))
    if only is not None:
        views = [v for v in views if v.destination_id == only]
        if not views:
            raise NotFound(f"payload {payload_id} was not sent to destination {only}")
    plan = await _replay(request, views)
    return respond({"replayed": plan.replayed, "skipped": plan.skipped}, 202)


async def replay_deliveries(request: web.Request) -> web.Response:
    """Bulk replay of every delivery matching the filters.

    With ``limit`` the answer covers one page and carries ``next_after`` for the next call
    (the CLI's progress bar uses this); without it, the server walks every page itself.
    """
    body = await read_object(request, optional=True)
    where = _filter(body)
    after = _cursor(body.get("after"))
    limit = _positive("limit", body.get("limit"))
    page_size = min(limit or REPLAY_PAGE, REPLAY_PAGE)
    replayed, skipped = 0, []
    while True:
        views, after = await request.app[STORE].query(
            functools.partial(q.deliveries_page, where=where, after=after, limit=page_size)
        )
        plan = await _replay(request, views)
        replayed += plan.replayed
        skipped.extend(plan.skipped)
        if after is None or limit is not None:
            break
    answer: dict[str, Any] = {"replayed": replayed, "skipped": skipped}
    if limit is not None:
        answer["next_after"] = _next_after(after)
    return respond(answer, 202)
