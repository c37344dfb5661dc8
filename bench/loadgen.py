"""Load generators: wrk when it is installed, else a built-in HTTP/1.1 client.

The service and its limits are always driven by the same generator within one run. wrk costs
about 10 µs of CPU per request; the built-in one speaks just enough HTTP/1.1 over raw asyncio
protocols (prebuilt request bytes, keep-alive, a ``Content-Length`` answer) to stay far below
what an aiohttp client costs, so that the generator is not what limits a measurement.

Three shapes of load:

- ``closed_loop``: ``connections`` connections, each sending its next request when its last
  answer arrives, for a fixed time (wrk, or the built-in one);
- ``send_count``: the same until ``count`` requests have been answered (built-in);
- ``open_loop``: requests sent at a fixed rate on a schedule, whatever the answers do, so the
  latency is not hidden by a slow server holding back the sender (built-in).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast

from bench.errors import HarnessError
from bench.procs import run_to_end
from bench.stats import Histogram

Tool = Literal["wrk", "builtin"]

WRK: Final = shutil.which("wrk")
_RESULT: Final = re.compile(
    r"^BENCH-RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)$", re.MULTILINE
)
_LENGTH: Final = b"\r\ncontent-length:"


def default_tool() -> Tool:
    return "wrk" if WRK else "builtin"


@dataclass(frozen=True, slots=True)
class Target:
    """One kind of request: ``POST`` of ``body`` to ``path`` on 127.0.0.1:``port``."""

    port: int
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def raw(self, body: bytes | None = None) -> bytes:
        """The request as bytes on the wire (HTTP/1.1, keep-alive)."""
        content = self.body if body is None else body
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            *(f"{name}: {value}" for name, value in self.headers.items()),
            f"Content-Length: {len(content)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + content


@dataclass(slots=True)
class LoadResult:
    """What a load run saw: answers with the expected status, others, and their latency."""

    tool: Tool
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    first_answer: float | None = None
    """``time.perf_counter()`` when the first expected answer arrived (built-in only)."""
    lag: float = 0.0
    """Open loop only: the largest delay of a send behind its schedule, in seconds."""
    histogram: Histogram = field(default_factory=Histogram)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


# -- wrk ------------------------------------------------------------------------------------

_SCRIPT: Final = """wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH-RESULT %d %d %d %d %.3f %.3f\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50.0), latency:percentile(99.0)))
end
"""


def _wrk_script(target: Target, workdir: Path) -> Path:
    body = target.body.decode()
    headers = "\n".join(
        f'wrk.headers["{name}"] = [==[{value}]==]' for name, value in target.headers.items()
    )
    if "]==]" in body or any("]==]" in value for value in target.headers.values()):
        raise HarnessError("the request cannot be written as a wrk script")
    path = workdir / f"wrk-{target.port}.lua"
    path.write_text(_SCRIPT.format(body=body, headers=headers))
    return path


async def _wrk(
    target: Target, *, connections: int, seconds: float, workdir: Path, core: int | None
) -> LoadResult:
    assert WRK is not None
    duration = max(1, round(seconds))
    argv = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(_wrk_script(target, workdir)),
        target.url,
    ]
    out, _ = await run_to_end("wrk", argv, workdir=workdir, core=core, timeout=duration + 30)
    match = _RESULT.search(out)
    if match is None:
        raise HarnessError(f"wrk printed no result:\n{out}")
    requests, micros, bad_status, socket_errors = (int(match.group(i)) for i in range(1, 5))
    return LoadResult(
        tool="wrk",
        ok=requests - bad_status,
        errors=bad_status + socket_errors,
        seconds=micros / 1e6,
        p50=float(match.group(5)) / 1e6,
        p99=float(match.group(6)) / 1e6,
    )


# -- the built-in generator -------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time, answers read by length."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(_LENGTH)
        if at < 0:
            self._fail(HarnessError("an answer without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + len(_LENGTH) : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        del self._buffer[:total]
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self._lost = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def exchange(self, request: bytes) -> int:
        """Send ``request`` and return the answer's status code."""
        if self._lost is not None or self._transport is None:
            raise ConnectionResetError("the connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def _connect(port: int) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
    return protocol


class _Closed:
    """A closed-loop run of the built-in generator, ended by a deadline or a count."""

    def __init__(self, target: Target, expect: int, deadline: float, count: int | None) -> None:
        self.target = target
        self.request = target.raw()
        self.expect = expect
        self.deadline = deadline
        self.remaining = count
        self.result = LoadResult(tool="builtin")

    def _take(self) -> bool:
        if time.perf_counter() >= self.deadline:
            return False
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    async def worker(self) -> None:
        connection: _Connection | None = None
        try:
            while self._take():
                if connection is None:
                    connection = await _connect(self.target.port)
                started = time.perf_counter()
                try:
                    status = await connection.exchange(self.request)
                except (ConnectionError, OSError):
                    self.result.errors += 1
                    connection.close()
                    connection = None
                    continue
                self._record(status, started)
        finally:
            if connection is not None:
                connection.close()

    def _record(self, status: int, started: float) -> None:
        now = time.perf_counter()
        if status != self.expect:
            self.result.errors += 1
            return
        self.result.ok += 1
        self.result.histogram.record(now - started)
        if self.result.first_answer is None:
            self.result.first_answer = now


async def _builtin_closed(
    target: Target, *, connections: int, seconds: float, count: int | None, expect: int
) -> LoadResult:
    started = time.perf_counter()
    run = _Closed(target, expect, started + seconds, count)
    await asyncio.gather(*(run.worker() for _ in range(connections)))
    result = run.result
    result.seconds = time.perf_counter() - started
    result.p50 = result.histogram.percentile(0.50)
    result.p99 = result.histogram.percentile(0.99)
    return result


# -- the three shapes -----------------------------------------------------------------------


async def closed_loop(
    target: Target,
    *,
    connections: int,
    seconds: float,
    tool: Tool,
    workdir: Path,
    core: int | None,
    expect: int = 202,
) -> LoadResult:
    """Keep ``connections`` requests in flight for ``seconds``."""
    if tool == "wrk":
        return await _wrk(
            target, connections=connections, seconds=seconds, workdir=workdir, core=core
        )
    return await _builtin_closed(
        target, connections=connections, seconds=seconds, count=None, expect=expect
    )


async def send_count(
    target: Target, *, count: int, connections: int, limit: float, expect: int = 202
) -> LoadResult:
    """Send ``count`` requests, ``connections`` at a time; stop early after ``limit`` s."""
    return await _builtin_closed(
        target, connections=connections, seconds=limit, count=count, expect=expect
    )


async def open_loop(
    target: Target,
    body_at: Callable[[int, float], bytes],
    *,
    rate: float,
    seconds: float,
    max_connections: int = 256,
    warm_connections: int = 16,
    expect: int = 202,
) -> LoadResult:
    """Send request ``i`` at ``start + i / rate`` for ``seconds``, with ``body_at(i, now)``
    as its body (``now``: Unix seconds just before it is written).

    Latency counts from the scheduled time, so a server that falls behind is charged for
    the wait it caused. Each send runs in its own task, on an idle connection or a new one
    (``warm_connections`` are opened beforehand), so the schedule never waits for an answer
    or a connect; a send that finds ``max_connections`` busy counts as an error.
    """
    result = LoadResult(tool="builtin")
    idle = [await _connect(target.port) for _ in range(warm_connections)]
    opened = len(idle)
    tasks: set[asyncio.Task[None]] = set()

    async def one(number: int, due: float) -> None:
        nonlocal opened
        if idle:
            connection = idle.pop()
        elif opened < max_connections:
            opened += 1
            connection = await _connect(target.port)
        else:
            result.errors += 1
            return
        try:
            status = await connection.exchange(target.raw(body_at(number, time.time())))
        except (ConnectionError, OSError):
            result.errors += 1
            connection.close()
            opened -= 1
            return
        if status == expect:
            result.ok += 1
            result.histogram.record(time.perf_counter() - due)
        else:
            result.errors += 1
        idle.append(connection)

    start = time.perf_counter()
    try:
        for number in range(int(rate * seconds)):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            result.lag = max(result.lag, time.perf_counter() - due)
            task = asyncio.create_task(one(number, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for connection in idle:
            connection.close()
    result.seconds = time.perf_counter() - start
    result.p50 = result.histogram.percentile(0.50)
    result.p99 = result.histogram.percentile(0.99)
    return result
