"""The real ``datapusher serve`` as a subprocess on loopback, for the slow functional tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

ADMIN_TOKEN: Final = "process-admin"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

_starts = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``datapusher serve``; its log goes to a file, so a busy server never blocks
    on a full pipe."""

    process: asyncio.subprocess.Process
    base: str
    log: Path

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and everything it logged (within 20 s)."""
        self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 20)
        return code, await asyncio.to_thread(self.log.read_text)

    async def crash(self) -> None:
        """SIGKILL: no shutdown code runs; whatever was only in its memory is lost."""
        self.process.kill()
        await asyncio.wait_for(self.process.wait(), 20)


async def start_server(db: Path, port: int, env: Mapping[str, str] | None = None) -> Server:
    """Start ``datapusher serve`` and wait (bounded) until it answers.

    ``env`` adds to (or overrides) the test's own ``DATAPUSHER_*`` settings.
    """
    environ = {
        **os.environ,
        "DATAPUSHER_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATAPUSHER_LOG_FORMAT": "json",
        "DATAPUSHER_SHUTDOWN_GRACE": "0.5",
        **(env or {}),
    }
    log = db.with_name(f"{db.name}.serve-{next(_starts)}.log")
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--port",
            str(port),
            "--db",
            str(db),
            "--allow-private-destinations",
            env=environ,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while process.returncode is None:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    url = f"{server.base}/api/accounts/"
                    async with session.get(url, headers=ADMIN) as answer:
                        if answer.status == 200:
                            return server
                await asyncio.sleep(0.05)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    logged = await asyncio.to_thread(log.read_text)
    raise RuntimeError(f"datapusher serve exited with {process.returncode}:\n{logged}")


@contextlib.asynccontextmanager
async def served(
    db: Path, port: int, env: Mapping[str, str] | None = None
) -> AsyncIterator[Server]:
    """A started server that is killed on exit unless the body already stopped it."""
    server = await start_server(db, port, env)
    try:
        yield server
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as r:
        return r.status, await r.json()
