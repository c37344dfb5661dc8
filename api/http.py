"""Request and response plumbing shared by the handlers: typed app state, JSON in and out."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from api.directory import TokenDirectory
from api.errors import BadRequest, PayloadTooLarge, ValidationFailed
from api.service import Commands
from api.settings import Settings
from eventstore import codec
from eventstore.events import Metadata
from eventstore.sqlite import SQLiteEventStore

SETTINGS: Final = web.AppKey("settings", Settings)
ADMIN_TOKEN: Final = web.AppKey("admin_token", str)
STORE: Final = web.AppKey("store", SQLiteEventStore)
COMMANDS: Final = web.AppKey("commands", Commands)
TOKENS: Final = web.AppKey("tokens", TokenDirectory)
REQUEST_ID: Final = web.RequestKey("request_id", str)
SHUTTING_DOWN: Final = web.AppKey("shutting_down", asyncio.Event)
"""Set when the server starts to shut down, so that long-lived answers (the live tail) end."""

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000


def respond(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=codec.dump_bytes(body), status=status, content_type="application/json")


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 413 past the size limit, 400 for anything but an object.

    With ``optional``, an empty body reads as ``{}``.
    """
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"the body is larger than the limit of {request.app[SETTINGS].max_body_bytes} bytes"
        ) from exc
    if optional and not raw.strip():
        return {}
    try:
        value = codec.loads(raw)
    except ValueError as exc:
        raise BadRequest("the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    """An integer id from the path; the routes only match digits, so this cannot fail."""
    return int(request.match_info[name])


def query_int(
    request: web.Request, name: str, default: int | None, *, low: int, high: int
) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationFailed(
            f"query parameter {name!r} must be an integer from {low} to {high}",
            details=[{"field": name, "message": f"expected {low}..{high}", "type": "query"}],
        )
    return int(raw)


def page_params(request: web.Request) -> tuple[int, int]:
    """``(after, limit)`` from ``?after=&limit=`` (limit 1..1000, default 100)."""
    after = query_int(request, "after", 0, low=0, high=2**62)
    limit = query_int(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    assert after is not None
    assert limit is not None
    return after, limit


def metadata(request: web.Request, actor: str = "admin") -> Metadata:
    return Metadata(actor=actor, request_id=request.get(REQUEST_ID))
