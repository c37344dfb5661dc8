"""The stack's own limits, each run as its own process so it can be pinned like the service.

- ``python -m bench.limits a --port P``: limit A, a bare aiohttp handler on
  ``POST /api/data/`` that parses the JSON body and answers 202 with a small JSON object.
- ``python -m bench.limits b --port P --db PATH``: limit B, the same plus one durable insert
  per request through a group-committing aiosqlite writer (WAL, ``synchronous=FULL``, the
  project's default): every request waits for the commit of the batch that holds its row.
  This is the cheapest durable acknowledgement the stack can give.
- ``python -m bench.limits c --url URL --in-flight N --warmup S --seconds S``: limit C, a bare
  aiohttp client (one ``ClientSession``, keep-alive) POSTing small JSON bodies to the sink with
  ``N`` requests in flight; prints ``{"requests", "seconds", "cpu_seconds"}`` as JSON.

None of this uses the project's code: they are what the project is compared with.
The event loop follows the project's stack (see ``bench.loops``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
import aiosqlite
from aiohttp import web

from bench import loops

MAX_BATCH: Final = 1000


async def health(_request: web.Request) -> web.Response:
    return web.Response(body=b"ok")


def _parse(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise web.HTTPBadRequest(text="not JSON") from exc
    if not isinstance(value, dict):
        raise web.HTTPBadRequest(text="not an object")
    return value


def _accepted(number: int) -> web.Response:
    answer = {"status": "accepted", "payload_id": f"{number:026d}", "destinations": 0}
    return web.Response(
        body=json.dumps(answer, separators=(",", ":")).encode(),
        status=202,
        content_type="application/json",
    )


def app_a() -> web.Application:
    numbers = itertools.count(1)

    async def receive(request: web.Request) -> web.Response:
        _parse(await request.read())
        return _accepted(next(numbers))

    app = web.Application()
    app.router.add_post("/api/data/", receive)
    app.router.add_get("/health", health)
    return app


class GroupWriter:
    """One task commits whatever is queued in one transaction; ``insert`` returns after the
    commit that holds its row (or raises what that commit raised)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[int]] | None] = asyncio.Queue()
        self._conn: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._conn = await aiosqlite.connect(self.path)
        await self._conn.execute("PRAGMA journal_mode=WAL")
        await self._conn.execute("PRAGMA synchronous=FULL")
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS payloads (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )
        await self._conn.commit()
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        if self._conn is not None:
            await self._conn.close()

    async def insert(self, body: str) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((body, future))
        return await future

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[tuple[str, asyncio.Future[int]]] = []
            item = await self._queue.get()
            while item is not None:
                batch.append(item)
                if self._queue.empty() or len(batch) >= MAX_BATCH:
                    break
                item = self._queue.get_nowait()
            stop = item is None
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[str, asyncio.Future[int]]]) -> None:
        assert self._conn is not None
        try:
            # sqlite3 opens the transaction implicitly: two hops to the thread per batch
            await self._conn.executemany(
                "INSERT INTO payloads (body) VALUES (?)", [(body,) for body, _ in batch]
            )
            await self._conn.commit()
        except Exception as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        for number, (_, future) in enumerate(batch):
            future.set_result(number)


WRITER: Final = web.AppKey("writer", GroupWriter)


def app_b(db: Path) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        raw = await request.read()
        _parse(raw)
        return _accepted(await request.app[WRITER].insert(raw.decode()))

    async def writer(app: web.Application) -> AsyncIterator[None]:
        group = GroupWriter(db)
        await group.open()
        app[WRITER] = group
        try:
            yield
        finally:
            await group.close()

    app = web.Application()
    app.cleanup_ctx.append(writer)
    app.router.add_post("/api/data/", receive)
    app.router.add_get("/health", health)
    return app


async def client_c(url: str, in_flight: int, warmup: float, seconds: float) -> dict[str, float]:
    """Keep ``in_flight`` POSTs going to ``url``; count those that end in the measured window."""
    body = json.dumps({"event": "bench", "value": 1}).encode()
    headers = {"Content-Type": "application/json", "webhook-id": "bench"}
    counted = 0
    started = time.perf_counter()
    window_start = started + warmup
    window_end = window_start + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counted
        while (now := time.perf_counter()) < window_end:
            async with session.post(url, data=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"the sink answered {answer.status}")
            if now >= window_start:
                counted += 1

    connector = aiohttp.TCPConnector(limit=in_flight)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm = asyncio.gather(*(worker(session) for _ in range(in_flight)))
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu_before = _cpu_seconds()
        await warm
        cpu_after = _cpu_seconds()
    return {"requests": counted, "seconds": seconds, "cpu_seconds": cpu_after - cpu_before}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _serve(app: web.Application, port: int) -> None:
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    which = parser.add_subparsers(dest="limit", required=True)
    a = which.add_parser("a", help="bare handler")
    a.add_argument("--port", type=int, required=True)
    b = which.add_parser("b", help="bare handler plus a group-committed durable insert")
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--db", type=Path, required=True)
    c = which.add_parser("c", help="bare keep-alive client against the sink")
    c.add_argument("--url", required=True)
    c.add_argument("--in-flight", type=int, default=64)
    c.add_argument("--warmup", type=float, default=1.0)
    c.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    loops.use_uvloop(loops.stack_uses_uvloop())
    runners: dict[str, Callable[[], None]] = {
        "a": lambda: _serve(app_a(), args.port),
        "b": lambda: _serve(app_b(args.db), args.port),
        "c": lambda: print(
            json.dumps(asyncio.run(client_c(args.url, args.in_flight, args.warmup, args.seconds)))
        ),
    }
    with contextlib.suppress(KeyboardInterrupt):
        runners[args.limit]()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
