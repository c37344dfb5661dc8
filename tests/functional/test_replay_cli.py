"""``datapusher replay`` against a running server: bulk replay with a progress bar."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.cli import main
from tests.functional.helpers import (
    ADMIN_TOKEN,
    Client,
    create_account,
    create_destination,
    of_type,
    send_data,
    wait_for_log,
)
from tests.sink import Sink

MakeClient = Callable[..., Awaitable[Client]]


async def _failed_payloads(client: Client, sink: Sink, count: int) -> list[str]:
    """``count`` payloads whose only delivery failed for good (no retries configured)."""
    sink.answer("/flaky", 500)
    account = await create_account(client)
    await create_destination(client, account["id"], sink.url("/flaky"))
    ids = [
        (await send_data(client, account["app_secret_token"], {"n": n}))["payload_id"]
        for n in range(count)
    ]
    await wait_for_log(client, lambda log: len(of_type(log, "DeliveryFailed")) == count)
    return ids


async def test_replay_command_replays_every_failed_delivery(
    make_client: MakeClient, sink: Sink, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command replays what matches page by page, draws its progress, and every failed
    payload is then delivered with the same webhook-id."""
    client = await make_client(retry_schedule=())
    ids = await _failed_payloads(client, sink, 5)
    sink.answer("/flaky", 200)
    url = str(client.make_url("")).rstrip("/")

    code = await asyncio.to_thread(
        main, ["replay", "--url", url, "--admin-token", ADMIN_TOKEN, "--status", "failed"]
    )

    out, err = capsys.readouterr()
    assert code == 0
    assert "replayed 5 of 5 matching deliveries" in out
    assert "5/5" in err
    log = await wait_for_log(client, lambda log: len(of_type(log, "DeliverySucceeded")) == 5)
    replays = of_type(log, "DeliveryReplayRequested")
    assert sorted(r.data["payload_id"] for r in replays) == sorted(ids)
    assert all(r.metadata["actor"] == "admin" for r in replays)
    assert all(sink.count(payload_id) == 2 for payload_id in ids)


async def test_replay_command_reports_a_refusal(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong admin token ends the command with exit code 1 and the server's reason."""
    client = await make_client()
    url = str(client.make_url("")).rstrip("/")

    code = await asyncio.to_thread(main, ["replay", "--url", url, "--admin-token", "wrong"])

    assert code == 1
    assert "401" in capsys.readouterr().err


def test_replay_command_needs_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --admin-token or DATAPUSHER_ADMIN_TOKEN the command refuses to start."""
    monkeypatch.delenv("DATAPUSHER_ADMIN_TOKEN", raising=False)
    code: Any = main(["replay", "--url", "http://127.0.0.1:9"])
    assert code == 2
    assert "DATAPUSHER_ADMIN_TOKEN" in capsys.readouterr().err
