"""A real loopback webhook receiver for tests: it records every request and answers as told.

Use it with pytest-aiohttp (``server = await aiohttp_server(sink.app)``, then
``sink.base_url = str(server.make_url(""))``) or on its own (``async with Sink() as sink:``,
or ``await sink.start()`` / ``await sink.stop()``), for instance in-process while the service
under test runs as a subprocess.

Every path answers 200 unless told otherwise with :meth:`Sink.answer` (one answer, repeated)
or :meth:`Sink.script` (answers used in turn, the last one repeated). A request is recorded as
soon as its body has arrived, before any delay, so a test can wait for a request that the sink
is still holding. Delays end early when the sink shuts down, so a hanging answer never holds
up a test's teardown.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

__all__ = ["Answer", "Received", "Sink"]

WEBHOOK_ID: Final = "webhook-id"


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the sink saw it; ``received_at`` is Unix seconds (wall clock)."""

    method: str
    path: str
    query: MultiDictProxy[str]
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get(WEBHOOK_ID)

    def json(self) -> Any:
        """The body decoded as JSON; raises ``ValueError`` if it is not JSON."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class Answer:
    """How to answer one request: after ``delay`` seconds, ``status`` with ``body``.

    ``retry_after`` (seconds or an HTTP date) is sent as the ``Retry-After`` header when set.
    """

    status: int = 200
    delay: float = 0.0
    retry_after: int | str | None = None
    body: bytes = b"ok"


class Sink:
    """Records requests on any path and answers each path as it was told."""

    def __init__(self, default: Answer | None = None) -> None:
        self.requests: list[Received] = []
        self.base_url: str | None = None
        self._default = default or Answer()
        self._scripts: dict[str, list[Answer]] = {}
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = self.make_app()

    # -- configuration -------------------------------------------------------------------

    def answer(
        self,
        path: str,
        status: int = 200,
        *,
        delay: float = 0.0,
        retry_after: int | str | None = None,
        body: bytes = b"ok",
    ) -> None:
        """Answer every request to ``path`` this way from now on."""
        self.script(path, Answer(status, delay, retry_after, body))

    def script(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to ``path`` with ``answers`` in turn, repeating the last."""
        if not answers:
            raise ValueError("script needs at least one answer")
        self._scripts[path] = list(answers)

    def url(self, path: str = "/") -> str:
        """The absolute URL of ``path`` on this sink; raises if it is not served yet."""
        if self.base_url is None:
            raise RuntimeError("the sink is not served: start it or set base_url")
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    # -- serving -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """A new ``web.Application`` whose every path is recorded and answered by this sink."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_shutdown.append(self._release)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 picks a free port); returns and sets ``base_url``."""
        if self._runner is not None:
            raise RuntimeError("the sink is already started")
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop serving (ending any delayed answer at once). Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _release(self, _app: web.Application) -> None:
        self._released.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path,
            query=MultiDictProxy(MultiDict(request.query)),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=await request.read(),
            received_at=time.time(),
        )
        answer = self._next_answer(request.path)
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
        if answer.delay > 0:
            try:
                async with asyncio.timeout(answer.delay):
                    await self._released.wait()
            except TimeoutError:
                pass
        headers = {} if answer.retry_after is None else {"Retry-After": str(answer.retry_after)}
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    def _next_answer(self, path: str) -> Answer:
        script = self._scripts.get(path)
        if not script:
            return self._default
        return script.pop(0) if len(script) > 1 else script[0]

    # -- observing -----------------------------------------------------------------------

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - named in the TimeoutError's message
        *,
        path: str | None = None,
    ) -> list[Received]:
        """Wait until at least ``count`` requests (to ``path``, if given) have arrived.

        Returns those requests in arrival order. Raises ``TimeoutError`` naming what did
        arrive if they do not within ``timeout`` seconds.
        """
        try:
            async with asyncio.timeout(timeout), self._arrived:
                await self._arrived.wait_for(lambda: len(self.received(path)) >= count)
        except TimeoutError:
            seen = [(r.method, r.path) for r in self.requests]
            raise TimeoutError(
                f"expected {count} requests{f' to {path}' if path else ''} "
                f"within {timeout}s; got {seen}"
            ) from None
        return self.received(path)

    def received(self, path: str | None = None) -> list[Received]:
        """The requests so far, all of them or those to ``path``."""
        return [r for r in self.requests if path is None or r.path == path]

    def count(self, webhook_id: str) -> int:
        """How many requests carried this ``webhook-id``."""
        return self.by_webhook_id()[webhook_id]

    def by_webhook_id(self) -> Counter[str]:
        """Requests counted by their ``webhook-id`` header (requests without one left out)."""
        return Counter(r.webhook_id for r in self.requests if r.webhook_id is not None)

    def paths(self) -> Sequence[str]:
        return [r.path for r in self.requests]
