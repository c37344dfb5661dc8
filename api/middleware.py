"""Middlewares: request id and access log, the one error shape, admin authentication."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from api.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from api.http import ADMIN_TOKEN, REQUEST_ID, SETTINGS, respond
from api.ids import new_request_id
from eventstore.errors import StoreClosed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("api")

PUBLIC_HANDLERS: set[Handler] = set()
"""Handlers that need no admin token (``/api/data/`` authenticates by ``CL-X-TOKEN``)."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def public(handler: Handler) -> Handler:
    PUBLIC_HANDLERS.add(handler)
    return handler


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID.match(given) else new_request_id()


@web.middleware
async def context_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id, render every error in the one shape, log one line per request."""
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    # Bound and reset by hand: a keep-alive connection serves many requests in one task.
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await _answer(request, handler)
        if not response.prepared:  # a streamed answer set its headers itself
            response.headers["X-Request-ID"] = request_id
        log.info(
            "request.handled",
            method=request.method,
            path=request.path,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        return response
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or the error it raised in the one shape."""
    try:
        return await handler(request)
    except ApiError as exc:
        return respond(exc.body(), exc.error_status)
    except web.HTTPException as exc:
        return _from_aiohttp(request, exc)
    except StoreClosed:
        error: ApiError = Unavailable("the service is shutting down")
        return respond(error.body(), error.error_status)
    except Exception:
        log.exception("request.failed", method=request.method, path=request.path)
        error = InternalError("internal error")
        return respond(error.body(), error.error_status)


def _from_aiohttp(request: web.Request, exc: web.HTTPException) -> web.Response:
    error: ApiError
    if exc.status == 404:
        error = NotFound(f"no such path: {request.path}")
    elif exc.status == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
        response = respond(error.body(), error.error_status)
        response.headers["Allow"] = exc.headers.get("Allow", "")
        return response
    elif exc.status == 413:
        error = PayloadTooLarge(
            f"the body is larger than the limit of {request.app[SETTINGS].max_body_bytes} bytes"
        )
    elif exc.status < 400:
        raise exc
    else:
        code = exc.reason.lower().replace(" ", "_")
        error = ApiError(exc.reason, code=code, status=exc.status)
    return respond(error.body(), error.error_status)


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every matched route but the public ones needs ``Authorization: Bearer <admin token>``."""
    route_handler = request.match_info.handler
    if request.match_info.http_exception is None and route_handler not in PUBLIC_HANDLERS:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = request.app[ADMIN_TOKEN]
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise Unauthorized("a valid admin bearer token is required")
    return await handler(request)
