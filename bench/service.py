"""The real ``datapusher serve`` as a pinned subprocess, and the admin calls the bench needs.

It runs exactly as an operator would run it (``python -m api.cli serve``) with JSON logs
written to a file in the bench's temporary directory and private destinations allowed, since
the sinks listen on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.errors import HarnessError
from bench.procs import Child, free_port, python_module, run_to_end, running

ADMIN_TOKEN: Final = "bench-admin-token"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ENVIRONMENT: Final = {
    "DATAPUSHER_ADMIN_TOKEN": ADMIN_TOKEN,
    "DATAPUSHER_LOG_FORMAT": "json",
    "DATAPUSHER_SHUTDOWN_GRACE": "0.5",
}
_starts = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Service:
    child: Child
    port: int
    db: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def serve(
    workdir: Path, *, core: int | None, db: Path | None = None
) -> AsyncIterator[Service]:
    """A started, answering server on ``db`` (a fresh file unless given); stopped on exit."""
    number = next(_starts)
    port = free_port()
    path = db if db is not None else workdir / f"service-{number}.sqlite3"
    argv = python_module(
        "api.cli", "serve", "--port", str(port), "--db", str(path), "--allow-private-destinations"
    )
    async with running(
        f"service-{number}",
        argv,
        workdir=workdir,
        core=core,
        ready_url=f"http://127.0.0.1:{port}/api/accounts/",
        ready_headers=ADMIN,
        env=ENVIRONMENT,
    ) as child:
        yield Service(child, port, path)


async def command_exists(name: str, workdir: Path) -> float | None:
    """Seconds ``datapusher <name> --help`` took (its start-up), or None when the installed
    project has no such command."""
    try:
        _, seconds = await run_to_end(
            f"probe-{name}",
            python_module("api.cli", name, "--help"),
            workdir=workdir,
            core=None,
            timeout=30,
        )
    except HarnessError:
        return None
    return seconds


class Admin:
    """Admin calls against one server (one keep-alive session; use ``async with``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._session: aiohttp.ClientSession | None = None
        self._accounts = itertools.count(1)

    async def __aenter__(self) -> Admin:
        self._session = aiohttp.ClientSession(
            headers=ADMIN, timeout=aiohttp.ClientTimeout(total=60)
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, *, body: Any = None, expect: int = 200) -> Any:
        """The JSON answer; raises ``HarnessError`` for any status but ``expect``."""
        assert self._session is not None
        async with self._session.request(method, self.base + path, json=body) as answer:
            text = await answer.text()
            if answer.status != expect:
                raise HarnessError(f"{method} {path} answered {answer.status}: {text[:300]}")
            return await answer.json(content_type=None) if text else None

    async def status(self, path: str) -> int:
        assert self._session is not None
        async with self._session.get(self.base + path) as answer:
            await answer.read()
            return answer.status

    async def create_account(self) -> tuple[int, str]:
        """A new account; returns its id and its ``CL-X-TOKEN`` secret."""
        number = next(self._accounts)
        body = {"email": f"bench{number}@example.com", "account_name": f"bench {number}"}
        account = await self.call("POST", "/api/accounts/", body=body, expect=201)
        return int(account["id"]), str(account["app_secret_token"])

    async def create_destination(
        self, account: int, url: str, headers: Mapping[str, str] | None = None
    ) -> int:
        body = {"account": account, "url": url, "http_method": "POST", "headers": headers or {}}
        destination = await self.call("POST", "/api/destinations/", body=body, expect=201)
        return int(destination["id"])

    async def open_deliveries(self) -> bool:
        """Whether any delivery still lacks a recorded outcome (pending or retrying)."""
        for status in ("pending", "retrying"):
            page = await self.call("GET", f"/api/deliveries/?status={status}&limit=1")
            if page["items"]:
                return True
        return False

    async def wait_settled(self, *, limit: float, poll: float = 0.02) -> bool:
        """Wait (at most ``limit`` s) until no delivery is open; says whether that happened."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if not await self.open_deliveries():
                return True
            await asyncio.sleep(poll)
        return False
