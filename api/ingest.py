"""``POST /api/data/``: a client's JSON, recorded durably before the 202, fanned out later.

An ``Idempotency-Key`` makes a retry safe: a repeat of the same key and body by the same
account within 24 hours answers 200 with the first answer and fans out nothing new; the
same key with another body answers 409.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from api import commands as cmd
from api.errors import BadRequest, Conflict, Unauthorized
from api.http import COMMANDS, STORE, TOKENS, metadata, read_object, respond
from api.ids import new_payload_id, token_digest
from eventstore.events import body_digest, payload_stream
from projections import queries as q
from projections.errors import IdempotencyKeyTaken
from projections.models import AccountView, DestinationView
from projections.tables import IDEMPOTENCY_WINDOW

TOKEN_HEADER: Final = "CL-X-TOKEN"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
_KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")


def _accepted(payload_id: str, destinations: int) -> dict[str, Any]:
    return {"status": "accepted", "payload_id": payload_id, "destinations": destinations}


async def _authenticate(request: web.Request) -> tuple[AccountView, list[DestinationView]]:
    """The token's account and its destinations (from memory when nothing changed)."""
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise Unauthorized(f"the {TOKEN_HEADER} header is missing")
    account, destinations = await request.app[TOKENS].lookup(token_digest(token))
    if account is None:
        raise Unauthorized(f"the {TOKEN_HEADER} token is not valid")
    return account, destinations


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise BadRequest(f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters")
    return key


async def _earlier_answer(
    request: web.Request, account: AccountView, key: str, digest: str
) -> web.Response | None:
    """The first answer for this key if it is still fresh; 409 if the body differs."""
    found = await request.app[STORE].query(lambda conn: q.idempotency_record(conn, account.id, key))
    if found is None:
        return None
    if datetime.fromisoformat(found.received_at) <= datetime.now(UTC) - IDEMPOTENCY_WINDOW:
        return None
    if found.body_sha256 != digest:
        raise Conflict(
            f"{IDEMPOTENCY_HEADER} {key!r} was used with a different body",
            code="idempotency_key_reused",
        )
    [received, *_] = await request.app[STORE].read_stream(payload_stream(found.payload_id))
    return respond(_accepted(found.payload_id, len(received.data["destination_ids"])), 200)


async def receive_payload(request: web.Request) -> web.Response:
    account, destinations = await _authenticate(request)
    key = _idempotency_key(request)
    body = await read_object(request)
    digest = body_digest(body)
    if key is not None:
        earlier = await _earlier_answer(request, account, key, digest)
        if earlier is not None:
            return earlier
    payload_id = new_payload_id()

    def load(conn: sqlite3.Connection) -> list[DestinationView]:
        return q.account_destinations(conn, account.id)

    def decide(current: list[DestinationView]) -> list[cmd.Change]:
        return cmd.decide_receive_payload(
            account,
            current,
            body,
            payload_id=payload_id,
            idempotency_key=key,
            body_sha256=digest,
        )

    try:
        records = await request.app[COMMANDS].run(
            load, decide, metadata(request, actor=f"account:{account.id}"), known=destinations
        )
    except IdempotencyKeyTaken as exc:
        # A simultaneous request with the same key was recorded first: answer as its repeat.
        assert key is not None
        repeat = await _earlier_answer(request, account, key, digest)
        if repeat is None:  # the first one expired between the two clocks' readings
            raise Conflict(str(exc), code="idempotency_key_reused") from exc
        return repeat
    fan_out = len(records[-1].data["destination_ids"])
    return respond(_accepted(payload_id, fan_out), 202)
