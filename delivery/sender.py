"""The sender: one HTTP attempt to one destination, described as a value.

This is the only module in the project that touches ``aiohttp.ClientSession``. Every request
has an explicit total timeout, never follows redirects, and ends in an :class:`AttemptResult`
instead of an exception: what happened on the network is data for the retry policy, not
control flow. Only programming errors and cancellation propagate.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Literal

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from delivery.errors import BlockedDestination
from delivery.guard import GuardedResolver, check_url
from eventstore import codec
from eventstore.events import ErrorClass

__all__ = ["EXCERPT_LIMIT", "AttemptResult", "ErrorClass", "OutboundRequest", "Sender"]


EXCERPT_LIMIT: Final = 2048
"""Most bytes of a response body (or error description) kept, counted in UTF-8."""

_DESCRIPTION_LIMIT: Final = 300


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """What to send: the destination's method, URL and headers, and the payload."""

    method: Literal["GET", "POST", "PUT"]
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    webhook_id: str


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt did.

    ``error`` is None exactly when the destination answered 2xx. ``status_code`` is the
    answer's status, or None when no answer came (every ``error`` but ``"http"``).
    ``duration_ms`` is wall time in milliseconds. ``response_excerpt`` is the start of the
    response body, or a short description of the transport error, never more than
    :data:`EXCERPT_LIMIT` bytes when encoded as UTF-8.
    """

    status_code: int | None
    error: ErrorClass | None
    duration_ms: float
    response_excerpt: str
    retry_after: float | None = None
    """Seconds the receiver asked to wait (``Retry-After`` on a 429 or 503), if it did."""

    @property
    def delivered(self) -> bool:
        """True if the destination answered 2xx."""
        return self.error is None


class Sender:
    """Sends :class:`OutboundRequest` values over one shared keep-alive connection pool.

    ``timeout`` is the total seconds allowed per attempt (connect, send, answer and excerpt).
    Unless ``allow_private`` is set, destinations are held to the SSRF guard: literal hosts
    are checked before sending and names when they are resolved, and a refusal is the result
    ``"blocked"``. ``limit`` caps simultaneous connections. ``resolver`` replaces aiohttp's
    default name resolver (the guard wraps it unless ``allow_private``); the caller keeps
    ownership of it.

    Call :meth:`start` inside the running event loop before :meth:`send`, and :meth:`close`
    when done.
    """

    def __init__(
        self,
        *,
        timeout: float,
        allow_private: bool,
        limit: int = 100,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._allow_private = allow_private
        self._limit = limit
        self._resolver = resolver
        self._guard: GuardedResolver | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool. Raises ``RuntimeError`` if already started."""
        if self._session is not None:
            raise RuntimeError("Sender already started")
        resolver = self._resolver
        if not self._allow_private:
            resolver = self._guard = GuardedResolver(self._resolver)
        connector = aiohttp.TCPConnector(limit=self._limit, use_dns_cache=True, resolver=resolver)
        # trust_env stays off: a proxy taken from the environment would resolve and connect
        # on our behalf, out of the guard's sight.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False
        )

    async def close(self) -> None:
        """Close the pool and the guard's resolver. Safe to call twice, or before start."""
        session, self._session = self._session, None
        guard, self._guard = self._guard, None
        if session is not None:
            await session.close()
        if guard is not None:
            await guard.close()

    async def send(self, request: OutboundRequest, *, timestamp: int) -> AttemptResult:
        """Make one attempt and describe it; never raises for what the network or peer did.

        ``timestamp`` (Unix seconds) goes out as ``webhook-timestamp``. Raises
        ``RuntimeError`` if the sender is not started; ``asyncio.CancelledError`` propagates.
        """
        if self._session is None:
            raise RuntimeError("Sender not started")
        started = time.perf_counter()
        try:
            status, excerpt, retry_after = await self._exchange(self._session, request, timestamp)
        except Exception as exc:
            error = classify(exc)
            if error is None:
                raise
            return AttemptResult(None, error, _elapsed_ms(started), describe(exc))
        error_class: ErrorClass | None = None if 200 <= status < 300 else "http"
        return AttemptResult(status, error_class, _elapsed_ms(started), excerpt, retry_after)

    async def _exchange(
        self, session: aiohttp.ClientSession, request: OutboundRequest, timestamp: int
    ) -> tuple[int, str, float | None]:
        url = _target_url(request)
        if not self._allow_private:
            # aiohttp never asks the resolver about literal IP hosts
            check_url(str(url))
        data = None if request.method == "GET" else _encode_json(request.body)
        async with session.request(
            request.method,
            url,
            headers=_outbound_headers(request, timestamp),
            data=data,
            allow_redirects=False,
        ) as response:
            retry_after = None
            if response.status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return response.status, await _read_excerpt(response), retry_after


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable, never negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(exc: BaseException) -> ErrorClass | None:
    """Name the transport failure ``exc`` stands for, or None if it is not one.

    aiohttp lets a resolver's non-``OSError`` exception through unwrapped and wraps an
    ``OSError`` in ``ClientConnectorDNSError``; the whole cause chain is searched so the
    guard's refusal is found either way.
    """
    if any(isinstance(link, BlockedDestination) for link in _cause_chain(exc)):
        return "blocked"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "connect"
    return None


def describe(exc: BaseException) -> str:
    """A short one-line description of ``exc`` for the attempt log."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return _cap_utf8(" ".join(text.split())[:_DESCRIPTION_LIMIT])


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        nested = link.os_error if isinstance(link, aiohttp.ClientConnectorError) else None
        link = link.__cause__ or nested
    return chain


def _target_url(request: OutboundRequest) -> URL:
    try:
        url = URL(request.url)
    except ValueError as exc:
        # what aiohttp itself raises for a URL it cannot use: a failed attempt, not a crash
        raise aiohttp.InvalidURL(request.url, str(exc)) from exc
    if request.method != "GET":
        return url
    return url.extend_query({key: _query_value(value) for key, value in request.body.items()})


def _query_value(value: Any) -> str:
    return value if isinstance(value, str) else _dumps(value)


def _dumps(value: Any) -> str:
    return codec.dumps(value)


def _encode_json(body: Mapping[str, Any]) -> bytes:
    return codec.dump_bytes(dict(body))


def _outbound_headers(request: OutboundRequest, timestamp: int) -> CIMultiDict[str]:
    headers = CIMultiDict(request.headers)
    # ours replace a destination header of the same name: receivers de-duplicate on them
    headers["webhook-id"] = request.webhook_id
    headers["webhook-timestamp"] = str(timestamp)
    if request.method != "GET" and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    return headers


async def _read_excerpt(response: aiohttp.ClientResponse) -> str:
    """Read at most EXCERPT_LIMIT bytes; the rest is never read (the connection is dropped)."""
    buffer = bytearray()
    try:
        while len(buffer) < EXCERPT_LIMIT:
            chunk = await response.content.read(EXCERPT_LIMIT - len(buffer))
            if not chunk:
                break
            buffer += chunk
    except (aiohttp.ClientError, TimeoutError):
        # The status line already carries the receiver's verdict; a body that breaks off or
        # stalls afterwards only shortens the excerpt.
        pass
    return _cap_utf8(bytes(buffer).decode("utf-8", errors="replace"))


def _cap_utf8(text: str) -> str:
    # errors="replace" can turn one stray byte into a three-byte U+FFFD, so cap the
    # re-encoded form; "ignore" then drops only a character cut in half at the end.
    return text.encode("utf-8", errors="replace")[:EXCERPT_LIMIT].decode("utf-8", errors="ignore")


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
