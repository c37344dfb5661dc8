"""The sender against a real loopback sink: what goes out, and how each outcome is described."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy
from pytest_aiohttp.plugin import AiohttpServer

from delivery.errors import BlockedDestination
from delivery.sender import EXCERPT_LIMIT, AttemptResult, OutboundRequest, Sender, classify
from tests.fakes import StaticResolver

TIMESTAMP = 1_700_000_000
BIG_BODY = b"x" * 100_000
# one ASCII byte first, so the 2048-byte cut falls inside a two-byte character
BIG_UTF8_BODY = ("x" + "é" * 50_000).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the sink saw it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: CIMultiDictProxy[str]
    body: bytes


RECEIVED = web.AppKey("received", list[Received])
ARRIVED = web.AppKey("arrived", asyncio.Event)


async def _record(request: web.Request) -> None:
    request.app[RECEIVED].append(
        Received(
            method=request.method,
            path=request.path,
            query=list(request.query.items()),
            headers=request.headers,
            body=await request.read(),
        )
    )
    request.app[ARRIVED].set()


async def _answer(request: web.Request) -> web.StreamResponse:
    await _record(request)
    path = request.path
    if path.startswith("/status/"):
        code = int(path.removeprefix("/status/"))
        return web.Response(status=code, text=f"answered {code}")
    if path == "/redirect":
        raise web.HTTPFound("/target")
    if path == "/slow":
        await asyncio.sleep(2)
    if path == "/big":
        return web.Response(body=BIG_BODY)
    if path == "/big-utf8":
        return web.Response(body=BIG_UTF8_BODY, content_type="text/plain", charset="utf-8")
    if path == "/stalled-body":
        return await _stall_after_excerpt(request)
    return web.Response(text="ok")


async def _stall_after_excerpt(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = 10 * EXCERPT_LIMIT
    await response.prepare(request)
    await response.write(b"s" * EXCERPT_LIMIT)
    await asyncio.Event().wait()  # never: the rest of the body does not come
    return response


@dataclass(frozen=True, slots=True)
class Sink:
    """A loopback server that records every request it receives."""

    server: TestServer
    received: list[Received]
    arrived: asyncio.Event

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def sink(aiohttp_server: AiohttpServer) -> Sink:
    app = web.Application()
    app[RECEIVED] = []
    app[ARRIVED] = asyncio.Event()
    app.router.add_route("*", "/{tail:.*}", _answer)
    server = await aiohttp_server(app)
    return Sink(server, app[RECEIVED], app[ARRIVED])


@asynccontextmanager
async def running(
    *, allow_private: bool = True, seconds: float = 5.0, resolver: AbstractResolver | None = None
) -> AsyncIterator[Sender]:
    """A started Sender with a ``seconds`` timeout, closed on exit."""
    sender = Sender(timeout=seconds, allow_private=allow_private, resolver=resolver)
    await sender.start()
    try:
        yield sender
    finally:
        await sender.close()


def outbound(
    url: str,
    method: Literal["GET", "POST", "PUT"] = "POST",
    *,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> OutboundRequest:
    return OutboundRequest(
        method=method,
        url=url,
        headers=headers or {},
        body={"event": "signup", "user": 7} if body is None else body,
        webhook_id="pl_01HZX",
    )


async def send_once(request: OutboundRequest, **options: Any) -> AttemptResult:
    async with running(**options) as sender:
        return await sender.send(request, timestamp=TIMESTAMP)


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_post_and_put_send_the_payload_as_a_json_body(
    sink: Sink, method: Literal["POST", "PUT"]
) -> None:
    """POST and PUT carry the payload as a JSON body labelled application/json."""
    body = {"event": "signup", "user": {"id": 7, "tags": ["a", "é"]}, "ok": True, "n": None}
    result = await send_once(outbound(sink.url("/hook"), method, body=body))
    assert result.delivered
    (seen,) = sink.received
    assert (seen.method, seen.path) == (method, "/hook")
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == body


async def test_destination_content_type_is_kept(sink: Sink) -> None:
    """A Content-Type among the destination's headers, in any case, is sent instead of ours."""
    headers = {"content-type": "application/vnd.acme+json"}
    await send_once(outbound(sink.url("/hook"), headers=headers))
    (seen,) = sink.received
    assert seen.headers.getall("Content-Type") == ["application/vnd.acme+json"]
    assert json.loads(seen.body) == {"event": "signup", "user": 7}


async def test_get_sends_the_payload_as_query_parameters(sink: Sink) -> None:
    """GET appends the top-level keys to the URL's own query, JSON-encoding non-strings."""
    body = {"s": "plain text", "n": 1, "t": True, "z": None, "o": {"a": 1}, "l": [1, "x"]}
    result = await send_once(outbound(sink.url("/hook?existing=yes"), "GET", body=body))
    assert result.delivered
    (seen,) = sink.received
    assert seen.method == "GET"
    assert seen.query == [
        ("existing", "yes"),
        ("s", "plain text"),
        ("n", "1"),
        ("t", "true"),
        ("z", "null"),
        ("o", '{"a":1}'),
        ("l", '[1,"x"]'),
    ]
    assert seen.body == b""
    assert "Content-Type" not in seen.headers


async def test_destination_and_webhook_headers_are_sent(sink: Sink) -> None:
    """Every request carries the destination's headers plus webhook-id and webhook-timestamp."""
    headers = {"Authorization": "Bearer s3cret", "X-Tenant": "acme"}
    await send_once(outbound(sink.url("/hook"), "PUT", headers=headers))
    (seen,) = sink.received
    assert seen.headers["Authorization"] == "Bearer s3cret"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["webhook-id"] == "pl_01HZX"
    assert seen.headers["webhook-timestamp"] == str(TIMESTAMP)


async def test_webhook_headers_override_destination_headers_of_the_same_name(sink: Sink) -> None:
    """A destination cannot replace the webhook-id or webhook-timestamp the receiver relies on."""
    headers = {"Webhook-Id": "forged", "WEBHOOK-TIMESTAMP": "0"}
    await send_once(outbound(sink.url("/hook"), headers=headers))
    (seen,) = sink.received
    assert seen.headers.getall("webhook-id") == ["pl_01HZX"]
    assert seen.headers.getall("webhook-timestamp") == [str(TIMESTAMP)]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
async def test_2xx_is_delivered(sink: Sink, status: int) -> None:
    """Any 2xx answer is a delivery with its status and no error."""
    result = await send_once(outbound(sink.url(f"/status/{status}")))
    assert result.delivered
    assert (result.status_code, result.error) == (status, None)
    assert result.duration_ms > 0


@pytest.mark.parametrize("status", [400, 404, 410, 429, 500, 503])
async def test_non_2xx_is_an_http_error_with_its_status(sink: Sink, status: int) -> None:
    """A 4xx or 5xx answer is error "http" with its status code and the start of its body."""
    result = await send_once(outbound(sink.url(f"/status/{status}")))
    assert not result.delivered
    assert (result.status_code, result.error) == (status, "http")
    assert result.response_excerpt == f"answered {status}"


async def test_redirects_are_not_followed(sink: Sink) -> None:
    """A 3xx is error "http" with its status, and the redirect target receives nothing."""
    result = await send_once(outbound(sink.url("/redirect")))
    assert (result.status_code, result.error) == (302, "http")
    assert [seen.path for seen in sink.received] == ["/redirect"]


async def test_slow_answer_is_a_timeout(sink: Sink) -> None:
    """An answer slower than the sender's timeout is error "timeout" without a status."""
    result = await send_once(outbound(sink.url("/slow")), seconds=0.2)
    assert (result.status_code, result.error) == (None, "timeout")


async def test_refused_connection_is_a_connect_error() -> None:
    """Nothing listening on the port is error "connect"."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await send_once(outbound(f"http://127.0.0.1:{port}/hook"))
    assert (result.status_code, result.error) == (None, "connect")
    assert result.response_excerpt


@pytest.mark.parametrize("allow_private", [True, False])
async def test_unresolvable_name_is_a_dns_error(allow_private: bool) -> None:
    """A name that does not resolve is error "dns", with or without the guard."""
    result = await send_once(outbound("http://nonexistent.invalid/"), allow_private=allow_private)
    assert (result.status_code, result.error) == (None, "dns")


async def test_tls_handshake_failure_is_a_tls_error(sink: Sink) -> None:
    """Speaking TLS to a server that does not is error "tls"."""
    result = await send_once(outbound(f"https://127.0.0.1:{sink.port}/hook"))
    assert (result.status_code, result.error) == (None, "tls")
    assert sink.received == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.1"])
async def test_guard_blocks_loopback_destinations(sink: Sink, host: str) -> None:
    """Without allow_private a loopback destination is "blocked" and receives nothing."""
    result = await send_once(outbound(f"http://{host}:{sink.port}/hook"), allow_private=False)
    assert (result.status_code, result.error) == (None, "blocked")
    assert "blocked" in result.response_excerpt
    assert sink.received == []


async def test_guard_blocks_a_name_with_any_forbidden_address(sink: Sink) -> None:
    """A name resolving to a public and a loopback address is "blocked", every time."""
    resolver = StaticResolver({"rebind.test": ["93.184.216.34", "127.0.0.1"]})
    request = outbound(f"http://rebind.test:{sink.port}/hook")
    async with running(allow_private=False, resolver=resolver) as sender:
        first = await sender.send(request, timestamp=TIMESTAMP)
        second = await sender.send(request, timestamp=TIMESTAMP)
    assert (first.error, second.error) == ("blocked", "blocked")
    assert first.status_code is None
    assert sink.received == []


async def test_allow_private_sends_to_names_resolving_to_loopback(sink: Sink) -> None:
    """With allow_private a name resolving to loopback is delivered, with its name as Host."""
    resolver = StaticResolver({"sink.test": ["127.0.0.1"]})
    result = await send_once(outbound(f"http://sink.test:{sink.port}/hook"), resolver=resolver)
    assert result.delivered
    (seen,) = sink.received
    assert seen.headers["Host"] == f"sink.test:{sink.port}"


async def test_excerpt_is_capped_for_a_big_body(sink: Sink) -> None:
    """Of a 100 KB answer only the first 2048 bytes are kept."""
    result = await send_once(outbound(sink.url("/big")))
    assert result.delivered
    assert result.response_excerpt == "x" * EXCERPT_LIMIT


async def test_excerpt_stays_within_the_cap_when_a_character_is_cut(sink: Sink) -> None:
    """A multi-byte character cut at the cap is dropped, so the excerpt stays valid and small."""
    result = await send_once(outbound(sink.url("/big-utf8")))
    assert result.response_excerpt == "x" + "é" * 1023
    assert len(result.response_excerpt.encode("utf-8")) <= EXCERPT_LIMIT


async def test_body_past_the_excerpt_is_not_awaited(sink: Sink) -> None:
    """A 2xx whose body never ends after the first 2048 bytes is delivered without reading on."""
    # the sender's own timeout is far off, so only not reading on lets this finish in time
    async with asyncio.timeout(10):
        result = await send_once(outbound(sink.url("/stalled-body")), seconds=60.0)
    assert (result.status_code, result.error) == (200, None)
    assert result.response_excerpt == "s" * EXCERPT_LIMIT


async def test_one_sender_sends_many_requests(sink: Sink) -> None:
    """A started sender serves concurrent sends over its shared pool."""
    async with running() as sender:
        results = await asyncio.gather(
            *(sender.send(outbound(sink.url(f"/n/{i}")), timestamp=TIMESTAMP) for i in range(20))
        )
    assert all(result.delivered for result in results)
    assert sorted(seen.path for seen in sink.received) == sorted(f"/n/{i}" for i in range(20))


async def test_send_before_start_is_a_programming_error() -> None:
    """Sending without start() raises instead of describing a network outcome."""
    sender = Sender(timeout=1.0, allow_private=True)
    with pytest.raises(RuntimeError):
        await sender.send(outbound("http://example.com/"), timestamp=TIMESTAMP)


async def test_close_is_idempotent() -> None:
    """close() may be called twice, and before start()."""
    sender = Sender(timeout=1.0, allow_private=False)
    await sender.close()
    await sender.start()
    await sender.close()
    await sender.close()


def test_a_wrapped_guard_refusal_is_still_blocked() -> None:
    """A guard refusal found anywhere in the cause chain classifies as "blocked"."""
    refusal = BlockedDestination("rebind.test", "127.0.0.1")
    wrapped = aiohttp.ClientConnectionError("cannot connect")
    wrapped.__cause__ = refusal
    assert (classify(refusal), classify(wrapped)) == ("blocked", "blocked")
    assert classify(aiohttp.ClientConnectionError("reset")) == "connect"
    assert classify(ValueError("a bug")) is None


async def test_cancellation_propagates(sink: Sink) -> None:
    """Cancelling a send in flight raises CancelledError instead of returning a result."""
    async with running() as sender:
        task = asyncio.create_task(sender.send(outbound(sink.url("/slow")), timestamp=TIMESTAMP))
        await sink.arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
