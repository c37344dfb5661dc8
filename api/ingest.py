"""``POST /api/data/``: a client's JSON, recorded durably before the 202, fanned out later."""

from __future__ import annotations

import sqlite3

from aiohttp import web

from api import commands as cmd
from api.errors import Unauthorized
from api.http import COMMANDS, STORE, metadata, read_object, respond
from api.ids import new_payload_id, token_digest
from projections import queries as q
from projections.models import DestinationView

TOKEN_HEADER = "CL-X-TOKEN"


async def receive_payload(request: web.Request) -> web.Response:
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise Unauthorized(f"the {TOKEN_HEADER} header is missing")
    digest = token_digest(token)
    account = await request.app[STORE].query(lambda conn: q.account_by_token(conn, digest))
    if account is None:
        raise Unauthorized(f"the {TOKEN_HEADER} token is not valid")
    body = await read_object(request)
    payload_id = new_payload_id()

    def load(conn: sqlite3.Connection) -> list[DestinationView]:
        return q.account_destinations(conn, account.id)

    def decide(destinations: list[DestinationView]) -> list[cmd.Change]:
        return cmd.decide_receive_payload(account, destinations, body, payload_id=payload_id)

    records = await request.app[COMMANDS].run(
        load, decide, metadata(request, actor=f"account:{account.id}")
    )
    fan_out = len(records[-1].data["destination_ids"])
    return respond({"status": "accepted", "payload_id": payload_id, "destinations": fan_out}, 202)
