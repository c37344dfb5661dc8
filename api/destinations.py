"""``/api/destinations/``: create, read, list, update, delete, enable, disable."""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from api import commands as cmd
from api.errors import NotFound, ValidationFailed
from api.history import as_of_position, destination_as_of
from api.http import (
    COMMANDS,
    SETTINGS,
    STORE,
    metadata,
    page_params,
    path_id,
    query_int,
    read_object,
    respond,
)
from api.schemas import DestinationIn, DestinationPatch, destination_body, parse
from delivery.errors import BlockedDestination
from delivery.guard import check_url
from projections import queries as q
from projections.models import AccountView, DestinationView


def _fields(request: web.Request, body: DestinationIn) -> cmd.DestinationFields:
    url = str(body.url)
    if not request.app[SETTINGS].allow_private_destinations:
        try:
            check_url(url)
        except BlockedDestination as exc:
            raise ValidationFailed(
                "the request body is not valid",
                details=[{"field": "url", "message": str(exc), "type": "blocked_address"}],
            ) from exc
    return cmd.DestinationFields(body.account, url, body.http_method, dict(body.headers))


def _current(view: DestinationView) -> dict[str, Any]:
    return {
        "account": view.account_id,
        "url": view.url,
        "http_method": view.http_method,
        "headers": dict(view.headers),
    }


async def _live(request: web.Request, destination_id: int) -> DestinationView:
    view = await request.app[STORE].query(lambda conn: q.destination(conn, destination_id))
    if view is None:
        raise NotFound(f"destination {destination_id} not found")
    return view


async def create_destination(request: web.Request) -> web.Response:
    fields = _fields(request, parse(DestinationIn, await read_object(request)))

    def load(conn: sqlite3.Connection) -> tuple[AccountView | None, int]:
        return q.account(conn, fields.account_id), q.next_destination_id(conn)

    commands = request.app[COMMANDS]
    records = await commands.run(
        load,
        lambda state: cmd.decide_create_destination(
            state[0], fields, destination_id=commands.ids.take("destination", state[1])
        ),
        metadata(request),
    )
    view = await _live(request, int(records[-1].data["destination_id"]))
    return respond(destination_body(view), 201)


async def list_destinations(request: web.Request) -> web.Response:
    after, limit = page_params(request)
    account_id = query_int(request, "account", None, low=1, high=2**62)
    page = await request.app[STORE].query(
        lambda c: q.destinations_page(c, account_id=account_id, after=after, limit=limit)
    )
    return respond(
        {"items": [destination_body(v) for v in page.items], "next_after": page.next_after}
    )


async def get_destination(request: web.Request) -> web.Response:
    """The destination now, or with ``?as_of=`` as it was then (folded from its stream)."""
    destination_id = path_id(request)
    position = await as_of_position(request)
    if position is None:
        return respond(destination_body(await _live(request, destination_id)))
    view = await destination_as_of(request.app[STORE], destination_id, position)
    return respond(destination_body(view))


async def update_destination(request: web.Request) -> web.Response:
    """PUT replaces every field; PATCH merges the given ones into the current destination."""
    destination_id = path_id(request)
    given = await read_object(request)
    patch: DestinationIn | DestinationPatch = (
        parse(DestinationPatch, given) if request.method == "PATCH" else parse(DestinationIn, given)
    )
    named_account = patch.account

    def load(conn: sqlite3.Connection) -> tuple[DestinationView | None, AccountView | None]:
        view = q.destination(conn, destination_id)
        owner = named_account or (view.account_id if view else None)
        return view, q.account(conn, owner) if owner else None

    def decide(state: tuple[DestinationView | None, AccountView | None]) -> list[cmd.Change]:
        view, account = state
        if view is None:
            raise NotFound(f"destination {destination_id} not found")
        merged = {**_current(view), **given} if request.method == "PATCH" else given
        fields = _fields(request, parse(DestinationIn, merged))
        return cmd.decide_update_destination(view, destination_id, account, fields)

    await request.app[COMMANDS].run(load, decide, metadata(request))
    return respond(destination_body(await _live(request, destination_id)))


async def delete_destination(request: web.Request) -> web.Response:
    destination_id = path_id(request)
    await request.app[COMMANDS].run(
        lambda conn: q.destination(conn, destination_id),
        lambda view: cmd.decide_delete_destination(view, destination_id),
        metadata(request),
    )
    return web.Response(status=204)


async def enable_destination(request: web.Request) -> web.Response:
    return await _set_enabled(request, enabled=True)


async def disable_destination(request: web.Request) -> web.Response:
    return await _set_enabled(request, enabled=False)


async def _set_enabled(request: web.Request, *, enabled: bool) -> web.Response:
    destination_id = path_id(request)
    await request.app[COMMANDS].run(
        lambda conn: q.destination(conn, destination_id),
        lambda view: cmd.decide_set_enabled(view, destination_id, enabled=enabled),
        metadata(request),
    )
    return respond(destination_body(await _live(request, destination_id)))
