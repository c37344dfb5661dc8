"""The real ``datapusher serve`` process: SIGTERM stops it cleanly, a restart delivers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.sink import Sink

ADMIN_TOKEN = "process-admin"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: asyncio.subprocess.Process
    base: str

    async def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit code and everything it logged (within 20 s)."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(self.process.communicate(), 20)
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()


async def start_server(db: Path, port: int) -> Server:
    """Start ``datapusher serve`` and wait (bounded) until it answers."""
    env = {
        **os.environ,
        "DATAPUSHER_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATAPUSHER_LOG_FORMAT": "json",
        "DATAPUSHER_SHUTDOWN_GRACE": "0.5",
    }
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
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    async with asyncio.timeout(20), aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(f"{server.base}/api/accounts/", headers=ADMIN) as answer:
                    if answer.status == 200:
                        return server
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def served(db: Path, port: int) -> AsyncIterator[Server]:
    server = await start_server(db, port)
    try:
        yield server
    finally:
        if server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as r:
        return r.status, await r.json()


async def test_sigterm_stops_cleanly_and_the_next_start_delivers(tmp_path: Path) -> None:
    """SIGTERM exits 0 with no traceback while a delivery hangs; the next start keeps the
    account and delivers the payload that was accepted before the stop."""
    db, port = tmp_path / "dp.sqlite3", free_port()
    async with Sink() as sink:
        sink.answer("/hook", delay=60)
        async with served(db, port) as server:
            status, account = await call(
                "POST",
                f"{server.base}/api/accounts/",
                json={"email": "p@example.com", "account_name": "P"},
                headers=ADMIN,
            )
            assert status == 201
            body = {"account": account["id"], "url": sink.url("/hook"), "http_method": "POST"}
            status, _ = await call(
                "POST", f"{server.base}/api/destinations/", json=body, headers=ADMIN
            )
            assert status == 201
            token = {"CL-X-TOKEN": account["app_secret_token"]}
            status, accepted = await call(
                "POST", f"{server.base}/api/data/", json={"k": 1}, headers=token
            )
            assert status == 202
            await sink.wait_for(1)

            code, logged = await server.stop()
            assert code == 0
            assert "Traceback" not in logged
            assert '"event": "store.closed"' in logged

        sink.answer("/hook", 200)
        async with served(db, port) as server:
            status, again = await call(
                "GET", f"{server.base}/api/accounts/{account['id']}/", headers=ADMIN
            )
            assert status == 200
            assert again["email"] == "p@example.com"
            await sink.wait_for(2)
            assert sink.count(accepted["payload_id"]) == 2
            code, logged = await server.stop()
            assert code == 0
            assert "Traceback" not in logged
