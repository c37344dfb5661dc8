"""``/api/accounts/``: create, read, list, update, delete, rotate the token."""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp import web

from api import commands as cmd
from api.errors import NotFound
from api.history import account_as_of, as_of_position
from api.http import COMMANDS, STORE, metadata, page_params, path_id, read_object, respond
from api.ids import new_account_token, token_digest
from api.schemas import AccountIn, AccountPatch, account_body, destination_body, parse
from projections import queries as q
from projections.models import AccountView, DestinationView


def _fields(body: AccountIn) -> cmd.AccountFields:
    website = str(body.website) if body.website is not None else None
    return cmd.AccountFields(body.email, body.account_name, website)


def _current(view: AccountView) -> dict[str, Any]:
    return {"email": view.email, "account_name": view.account_name, "website": view.website}


async def _live(request: web.Request, account_id: int) -> AccountView:
    view = await request.app[STORE].query(lambda conn: q.account(conn, account_id))
    if view is None:
        raise NotFound(f"account {account_id} not found")
    return view


async def create_account(request: web.Request) -> web.Response:
    fields = _fields(parse(AccountIn, await read_object(request)))
    token = new_account_token()
    commands = request.app[COMMANDS]
    records = await commands.run(
        q.next_account_id,
        lambda floor: cmd.decide_create_account(
            fields, account_id=commands.ids.take("account", floor), token_sha256=token_digest(token)
        ),
        metadata(request),
    )
    view = await _live(request, int(records[-1].data["account_id"]))
    return respond(account_body(view, token=token), 201)


async def list_accounts(request: web.Request) -> web.Response:
    after, limit = page_params(request)
    page = await request.app[STORE].query(lambda c: q.accounts_page(c, after=after, limit=limit))
    return respond({"items": [account_body(v) for v in page.items], "next_after": page.next_after})


async def get_account(request: web.Request) -> web.Response:
    """The account now, or with ``?as_of=`` as it was then (folded from its stream)."""
    account_id = path_id(request)
    position = await as_of_position(request)
    if position is None:
        return respond(account_body(await _live(request, account_id)))
    return respond(account_body(await account_as_of(request.app[STORE], account_id, position)))


async def update_account(request: web.Request) -> web.Response:
    """PUT replaces every field; PATCH merges the given ones into the current account."""
    account_id = path_id(request)
    given = await read_object(request)
    if request.method == "PATCH":
        parse(AccountPatch, given)
    else:
        parse(AccountIn, given)

    def decide(view: AccountView | None) -> list[cmd.Change]:
        if view is None:
            raise NotFound(f"account {account_id} not found")
        merged = {**_current(view), **given} if request.method == "PATCH" else given
        return cmd.decide_update_account(view, account_id, _fields(parse(AccountIn, merged)))

    await request.app[COMMANDS].run(
        lambda conn: q.account(conn, account_id), decide, metadata(request)
    )
    return respond(account_body(await _live(request, account_id)))


async def delete_account(request: web.Request) -> web.Response:
    account_id = path_id(request)

    def load(conn: sqlite3.Connection) -> tuple[AccountView | None, list[DestinationView]]:
        return q.account(conn, account_id), q.account_destinations(conn, account_id)

    await request.app[COMMANDS].run(
        load,
        lambda state: cmd.decide_delete_account(state[0], account_id, state[1]),
        metadata(request),
    )
    return web.Response(status=204)


async def rotate_token(request: web.Request) -> web.Response:
    account_id = path_id(request)
    token = new_account_token()
    await request.app[COMMANDS].run(
        lambda conn: q.account(conn, account_id),
        lambda view: cmd.decide_rotate_token(view, account_id, token_sha256=token_digest(token)),
        metadata(request),
    )
    return respond(account_body(await _live(request, account_id), token=token))


async def account_destinations(request: web.Request) -> web.Response:
    account_id = path_id(request)
    await _live(request, account_id)
    after, limit = page_params(request)
    page = await request.app[STORE].query(
        lambda c: q.destinations_page(c, account_id=account_id, after=after, limit=limit)
    )
    return respond(
        {"items": [destination_body(v) for v in page.items], "next_after": page.next_after}
    )
