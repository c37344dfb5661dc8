"""The audit API: the log itself, an account's history, entities as of a past point, the
live tail as server-sent events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from aiohttp import web

from api.errors import NotFound, ValidationFailed
from api.http import REQUEST_ID, SHUTTING_DOWN, STORE, query_int
from eventstore.errors import StoreClosed
from eventstore.events import account_stream, decode, destination_stream
from eventstore.sqlite import SQLiteEventStore
from projections import queries as q
from projections.folds import Stamp, evolve_account, evolve_destination
from projections.models import AccountView, DestinationView

V = TypeVar("V")

STREAM_PAGE: Final = 500
HEARTBEAT: Final = 15.0
"""Seconds of quiet after which the live tail sends a comment line, to keep proxies open."""


def _page(envelopes: list[tuple[int, str]], limit: int) -> web.Response:
    """A page of the log as the one list shape, spliced from the envelopes' JSON text."""
    full = len(envelopes) == limit and envelopes
    next_after = str(envelopes[-1][0]) if full else "null"
    items = ",".join(text for _, text in envelopes)
    return web.Response(
        text=f'{{"items":[{items}],"next_after":{next_after}}}', content_type="application/json"
    )


async def list_events(request: web.Request) -> web.Response:
    """``GET /api/events/?after=&limit=&stream=&type=``: the log in position order."""
    after = query_int(request, "after", 0, low=0, high=2**62)
    limit = query_int(request, "limit", 100, low=1, high=1000)
    assert after is not None
    assert limit is not None
    stream = request.query.get("stream") or None
    kind = request.query.get("type") or None
    envelopes = await request.app[STORE].read_envelopes(
        after=after,
        limit=limit,
        streams=None if stream is None else [stream],
        types=None if kind is None else [kind],
    )
    return _page(envelopes, limit)


async def account_history(request: web.Request) -> web.Response:
    """The account's and its destinations' events in log order, deleted ones included."""
    account_id = int(request.match_info["id"])
    after = query_int(request, "after", 0, low=0, high=2**62)
    limit = query_int(request, "limit", 100, low=1, high=1000)
    assert after is not None
    assert limit is not None
    store = request.app[STORE]
    if not await store.read_stream(account_stream(account_id)):
        raise NotFound(f"account {account_id} not found")
    owned = await store.query(lambda conn: q.destination_ids_ever(conn, account_id))
    streams = [account_stream(account_id), *(destination_stream(d) for d in owned)]
    return _page(await store.read_envelopes(after=after, limit=limit, streams=streams), limit)


async def as_of_position(request: web.Request) -> int | None:
    """The log position ``?as_of=`` names (digits: a position; else an ISO 8601 time)."""
    raw = request.query.get("as_of")
    if raw is None or raw == "":
        return None
    if raw.isdigit():
        return int(raw)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ValidationFailed(
            "as_of must be a log position or an ISO 8601 time",
            details=[{"field": "as_of", "message": "not a position or a time", "type": "query"}],
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    instant = when.astimezone(UTC).isoformat(timespec="microseconds")
    return await request.app[STORE].position_at(instant)


async def _as_of(
    store: SQLiteEventStore,
    stream: str,
    position: int,
    evolve: Callable[[V | None, Any, Stamp], V],
) -> V | None:
    """The entity folded from its stream up to ``position``, with the read models' own fold."""
    view: V | None = None
    for record in await store.read_all(streams=[stream], until=position):
        view = evolve(view, decode(record), Stamp.of(record))
    return view


async def account_as_of(store: SQLiteEventStore, account_id: int, position: int) -> AccountView:
    """The account as it was at ``position``; 404 if it did not exist then."""
    view = await _as_of(store, account_stream(account_id), position, evolve_account)
    if view is None or view.deleted:
        raise NotFound(f"account {account_id} did not exist at position {position}")
    return view


async def destination_as_of(
    store: SQLiteEventStore, destination_id: int, position: int
) -> DestinationView:
    """The destination as it was at ``position``; 404 if it did not exist then."""
    stream = destination_stream(destination_id)
    view = await _as_of(store, stream, position, evolve_destination)
    if view is None or view.deleted:
        raise NotFound(f"destination {destination_id} did not exist at position {position}")
    return view


def _start_position(request: web.Request, head: int) -> int:
    """``?after=``, else ``Last-Event-ID`` (a reconnecting browser), else the head."""
    raw = request.query.get("after") or request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return head
    if not raw.isdigit():
        raise ValidationFailed(
            "after (or Last-Event-ID) must be a log position",
            details=[{"field": "after", "message": "expected digits", "type": "query"}],
        )
    return int(raw)


def _frame(position: int, envelope: str) -> str:
    return f"id: {position}\ndata: {envelope}\n\n"


async def stream_events(request: web.Request) -> web.StreamResponse:
    """``GET /api/events/stream/``: every event after the start, then each new one as it
    commits. A slow reader only falls behind: it is fed one page at a time from the log,
    never from a buffer, and the write waits for the socket to drain."""
    store = request.app[STORE]
    position = _start_position(request, store.head)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Request-ID": request[REQUEST_ID],
        }
    )
    await response.prepare(request)
    stopping = request.app[SHUTTING_DOWN]
    try:
        while not stopping.is_set():
            envelopes = await store.read_envelopes(after=position, limit=STREAM_PAGE)
            if envelopes:
                await response.write("".join(_frame(*e) for e in envelopes).encode())
                position = envelopes[-1][0]
            if len(envelopes) == STREAM_PAGE:
                continue
            if not await _wait_for_more(store, position, stopping):
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, StoreClosed):
        pass
    return response


async def _wait_for_more(store: SQLiteEventStore, position: int, stopping: asyncio.Event) -> bool:
    """Wait for a commit past ``position`` or shutdown; False after a quiet heartbeat."""
    waits = {
        asyncio.ensure_future(store.wait_beyond(position)),
        asyncio.ensure_future(stopping.wait()),
    }
    done, pending = await asyncio.wait(
        waits, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a closed store ends the stream (StoreClosed)
    return bool(done)
