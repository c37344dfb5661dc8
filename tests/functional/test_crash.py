"""Crash safety of the real ``datapusher serve``: a SIGKILL under load loses no acknowledged
payload."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from tests.functional.processes import ADMIN, Server, call, free_port, served
from tests.sink import Sink

pytestmark = pytest.mark.slow

RETRIES: Final = {"DATAPUSHER_RETRY_SCHEDULE": "0.2,0.5,1"}
PATHS: Final = ("/a", "/b")
CLIENTS: Final = 8
MAX_REQUESTS: Final = 2000
LOAD_SECONDS: Final = 0.4
"""The kill comes after this much load, or once half of ``MAX_REQUESTS`` went out."""
DELIVERY_WAIT: Final = 30.0


@dataclass
class Load:
    """What the clients saw: the payload ids answered 202, and how many were cut off."""

    acknowledged: set[str] = field(default_factory=set)
    sent: int = 0
    cut_off: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    killed: asyncio.Event = field(default_factory=asyncio.Event)


async def set_up(server: Server, sink: Sink) -> tuple[str, dict[str, int]]:
    """One account with a destination per path of ``PATHS``; its token and the ids by path."""
    status, account = await call(
        "POST",
        f"{server.base}/api/accounts/",
        json={"email": "crash@example.com", "account_name": "Crash"},
        headers=ADMIN,
    )
    assert status == 201, account
    ids: dict[str, int] = {}
    for path in PATHS:
        body = {"account": account["id"], "url": sink.url(path), "http_method": "POST"}
        status, created = await call(
            "POST", f"{server.base}/api/destinations/", json=body, headers=ADMIN
        )
        assert status == 201, created
        ids[path] = created["id"]
    return account["app_secret_token"], ids


async def post_until_killed(
    session: aiohttp.ClientSession, server: Server, token: str, load: Load
) -> None:
    """POST payloads one after another, recording each 202, until the server is gone."""
    while load.sent < MAX_REQUESTS:
        load.sent += 1
        if load.sent >= MAX_REQUESTS // 2:
            load.enough.set()
        try:
            async with session.post(
                f"{server.base}/api/data/", json={"n": load.sent}, headers={"CL-X-TOKEN": token}
            ) as response:
                body = await response.read()
        except aiohttp.ClientError:
            if not load.killed.is_set():
                raise
            load.cut_off += 1
            return
        assert response.status == 202, (response.status, body)
        load.acknowledged.add(json.loads(body)["payload_id"])


async def load_then_kill(server: Server, token: str) -> Load:
    """Run ``CLIENTS`` posting clients, SIGKILL the server while they post, stop them."""
    load = Load()
    async with aiohttp.ClientSession() as session, asyncio.TaskGroup() as clients:
        for _ in range(CLIENTS):
            clients.create_task(post_until_killed(session, server, token, load))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOAD_SECONDS):
                await load.enough.wait()
        load.killed.set()
        await server.crash()
    return load


async def wait_until_delivered(sink: Sink, path: str, ids: set[str]) -> None:
    """Wait (at most ``DELIVERY_WAIT`` seconds) until every id of ``ids`` reached ``path``."""
    deadline = asyncio.get_running_loop().time() + DELIVERY_WAIT
    while missing := ids - delivered(sink, path).keys():
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            await sink.wait_for(len(sink.received(path)) + 1, remaining, path=path)
        except TimeoutError:
            raise AssertionError(
                f"{len(missing)} of {len(ids)} acknowledged payloads never reached {path}"
            ) from None


def unusual(logged: str) -> str:
    """The lines of a server's JSON log that are not at level info."""
    return "\n".join(line for line in logged.splitlines() if '"level": "info"' not in line)


def delivered(sink: Sink, path: str) -> Counter[str]:
    """How many times each ``webhook-id`` reached ``path``."""
    return Counter(r.webhook_id for r in sink.received(path) if r.webhook_id is not None)


def read_outcomes(db: Path) -> tuple[Counter[str], Counter[tuple[str, int]]]:
    """From the stopped server's file, read-only: ``PayloadReceived`` per payload id, and
    ``DeliverySucceeded`` per (payload id, destination id)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        received = Counter(
            str(payload_id)
            for (payload_id,) in conn.execute(
                "SELECT json_extract(data, '$.payload_id') FROM events "
                "WHERE type = 'PayloadReceived'"
            )
        )
        succeeded = Counter(
            (str(payload_id), int(destination_id))
            for payload_id, destination_id in conn.execute(
                "SELECT json_extract(data, '$.payload_id'), "
                "json_extract(data, '$.destination_id') FROM events "
                "WHERE type = 'DeliverySucceeded'"
            )
        )
    return received, succeeded


@dataclass(frozen=True)
class Aftermath:
    """A crash under load and a restart, as the clients, the sink and the log saw them."""

    load: Load
    destination_ids: dict[str, int]
    sink_counts: dict[str, Counter[str]]
    """Per path, how many times each ``webhook-id`` arrived."""
    received: Counter[str]
    succeeded: Counter[tuple[str, int]]

    def twice(self, path: str) -> int:
        """How many acknowledged payloads reached ``path`` more than once."""
        counts = self.sink_counts[path]
        return sum(counts[p] > 1 for p in self.load.acknowledged)


async def crash_and_restart(tmp_path: Path) -> Aftermath:
    """Post under load, SIGKILL, restart on the same file and port, wait until every
    acknowledged payload reached every destination, stop with SIGTERM, read the log."""
    db, port = tmp_path / "dp.sqlite3", free_port()
    async with Sink() as sink:
        async with served(db, port, RETRIES) as server:
            token, destination_ids = await set_up(server, sink)
            load = await load_then_kill(server, token)
        assert load.acknowledged, f"no payload was acknowledged in {load.sent} requests"
        assert load.cut_off > 0, "the clients had stopped before the kill"

        async with served(db, port, RETRIES) as server:
            try:
                for path in PATHS:
                    await wait_until_delivered(sink, path, load.acknowledged)
            except AssertionError as exc:
                _, logged = await server.stop()
                raise AssertionError(f"{exc}; it logged:\n{unusual(logged)}") from None
            code, logged = await server.stop()
        assert code == 0, unusual(logged)
        assert "Traceback" not in logged, unusual(logged)
        sink_counts = {path: delivered(sink, path) for path in PATHS}

    received, succeeded = await asyncio.to_thread(read_outcomes, db)
    return Aftermath(load, destination_ids, sink_counts, received, succeeded)


async def test_sigkill_under_load_loses_no_acknowledged_payload(tmp_path: Path) -> None:
    """Every payload answered 202 before a SIGKILL under load is in the log after a restart,
    and reaches each destination at least once."""
    after = await crash_and_restart(tmp_path)
    acknowledged = after.load.acknowledged
    summary = (
        f"{len(acknowledged)} of {after.load.sent} requests acknowledged before the kill; "
        f"delivered more than once: { {path: after.twice(path) for path in PATHS} }"
    )
    for path in PATHS:
        assert acknowledged <= after.sink_counts[path].keys(), summary
    missing = acknowledged - after.received.keys()
    assert not missing, f"{len(missing)} acknowledged payloads are not in the log; {summary}"
    assert all(after.received[p] == 1 for p in acknowledged), summary


async def test_each_delivery_is_recorded_as_succeeded_once_after_a_crash(
    tmp_path: Path,
) -> None:
    """After a crash and a restart, the log records one ``DeliverySucceeded`` per acknowledged
    payload and destination, however many times the sink saw it."""
    after = await crash_and_restart(tmp_path)
    for path, destination_id in after.destination_ids.items():
        counts = Counter(after.succeeded[(p, destination_id)] for p in after.load.acknowledged)
        assert counts == {1: len(after.load.acknowledged)}, (
            f"DeliverySucceeded per payload to {path}: {dict(counts)} "
            f"({after.twice(path)} of {len(after.load.acknowledged)} sent more than once)"
        )
