"""The real ``datapusher serve`` process: SIGTERM stops it cleanly, a restart delivers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.functional.processes import ADMIN, call, free_port, served
from tests.sink import Sink

pytestmark = pytest.mark.slow


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
            events = [json.loads(line)["event"] for line in logged.splitlines() if line]
            assert events[-2:] == ["store.closed", "server.stopped"]

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
