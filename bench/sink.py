"""The loopback webhook receiver, run as its own process: ``python -m bench.sink --port P``.

It answers 200 to every request and counts them, and counts apart the distinct deliveries
(``webhook-id`` and path), so that a delivery made twice shows as a duplicate. Requests to
``/timed/...`` carry a ``sent_at`` (Unix seconds, the client's wall clock on this same
machine) in their JSON body; for those it also keeps ``receive time - sent_at``, the
end-to-end latency of that delivery.

``GET /__bench/stats`` answers ``{"count": n, "distinct": d, "latencies": [seconds, ...]}``
(latencies only with ``?latencies=1``); ``POST /__bench/reset`` forgets everything so far.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from bench import loops
from bench.errors import HarnessError
from bench.procs import free_port, python_module, running

CONTROL: Final = "/__bench/"
TIMED: Final = "/timed/"
WEBHOOK_ID: Final = "webhook-id"
OK: Final = b"ok"


class Counts:
    """What the sink has seen since its start or its last reset."""

    def __init__(self) -> None:
        self.count = 0
        self.seen: set[int] = set()
        self.latencies: list[float] = []

    def reset(self) -> None:
        self.count = 0
        self.seen = set()
        self.latencies = []


def make_app(counts: Counts) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        path = request.path
        if path.startswith(CONTROL):
            return _control(request, counts)
        counts.count += 1
        # hashes, not strings: a million deliveries must not weigh on the sink
        counts.seen.add(hash((request.headers.get(WEBHOOK_ID), path)))
        if path.startswith(TIMED):
            arrived = time.time()
            # a body without a usable sent_at is counted, not timed
            with contextlib.suppress(ValueError, KeyError, TypeError):
                counts.latencies.append(arrived - float(json.loads(body)["sent_at"]))
        return web.Response(body=OK)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receive)
    return app


def _control(request: web.Request, counts: Counts) -> web.Response:
    if request.path == CONTROL + "reset" and request.method == "POST":
        counts.reset()
        return web.json_response({"count": 0, "distinct": 0})
    if request.path == CONTROL + "stats":
        stats: dict[str, object] = {"count": counts.count, "distinct": len(counts.seen)}
        if request.query.get("latencies"):
            stats["latencies"] = counts.latencies
        return web.json_response(stats)
    return web.json_response({"error": "unknown control path"}, status=404)


class SinkControl:
    """The bench's side of a running sink: its URLs, its counts, waiting for deliveries."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._session: aiohttp.ClientSession | None = None

    def url(self, path: str) -> str:
        return self.base + path

    async def _call(self, method: str, path: str) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with self._session.request(method, self.base + path) as answer:
            if answer.status != 200:
                raise HarnessError(f"the sink answered {answer.status} to {path}")
            return await answer.json()

    async def counts(self) -> tuple[int, int]:
        """Requests received, and distinct deliveries (webhook-id and path) among them."""
        stats = await self._call("GET", CONTROL + "stats")
        return int(stats["count"]), int(stats["distinct"])

    async def latencies(self) -> list[float]:
        stats = await self._call("GET", CONTROL + "stats?latencies=1")
        return [float(value) for value in stats["latencies"]]

    async def reset(self) -> None:
        await self._call("POST", CONTROL + "reset")

    async def wait_count(self, count: int, *, limit: float, poll: float = 0.02) -> int:
        """Wait (at most ``limit`` s) until ``count`` distinct deliveries arrived; returns
        how many did."""
        deadline = time.monotonic() + limit
        _, seen = await self.counts()
        while seen < count and time.monotonic() < deadline:
            await asyncio.sleep(poll)
            _, seen = await self.counts()
        return seen

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@contextlib.asynccontextmanager
async def sink(
    workdir: Path, *, core: int | None, name: str = "sink"
) -> AsyncIterator[SinkControl]:
    """A sink process on a free port, stopped on exit."""
    port = free_port()
    argv = python_module("bench.sink", "--port", str(port))
    control = SinkControl(port)
    async with running(
        name, argv, workdir=workdir, core=core, ready_url=control.url(CONTROL + "stats")
    ):
        try:
            yield control
        finally:
            await control.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    loops.use_uvloop(True)
    web.run_app(
        make_app(Counts()),
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
