"""The audit API: the log, an account's history, time travel, the live tail."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse

from tests.functional.helpers import (
    ADMIN,
    Client,
    create_account,
    create_destination,
    expect,
    expect_error,
    log_of,
    send_data,
)


async def _story(client: Client) -> dict[str, Any]:
    """An account renamed, given a destination, rotated, then deleted; returns its ids."""
    account = await create_account(client, account_name="Before")
    path = f"/api/accounts/{account['id']}/"
    await expect(await client.patch(path, json={"account_name": "After"}, headers=ADMIN), 200)
    destination = await create_destination(client, account["id"], "http://127.0.0.1:9/x")
    rotated = await expect(await client.post(f"{path}rotate-token/", headers=ADMIN), 200)
    await send_data(client, rotated["app_secret_token"], {"k": 1})
    await expect(await client.delete(path, headers=ADMIN), 204)
    return {
        "account": account["id"],
        "destination": destination["id"],
        "tokens": [account["app_secret_token"], rotated["app_secret_token"]],
    }


async def test_events_page_through_the_whole_log_with_filters(app_client: Client) -> None:
    """Pages of ?limit= walk the log in position order; stream and type filters narrow it."""
    await _story(app_client)
    log = await log_of(app_client)
    seen: list[int] = []
    after = 0
    while True:
        page = await expect(
            await app_client.get(f"/api/events/?after={after}&limit=2", headers=ADMIN), 200
        )
        seen += [item["position"] for item in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    # The worker may record delivery outcomes meanwhile: the pages cover at least the log
    # as it was, without gaps or repeats.
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) >= len(log)
    typed = await expect(
        await app_client.get("/api/events/?type=AccountUpdated", headers=ADMIN), 200
    )
    assert [item["type"] for item in typed["items"]] == ["AccountUpdated"]
    envelope = typed["items"][0]
    assert set(envelope) == {
        "position", "stream", "version", "type", "schema_version", "data", "metadata",
        "recorded_at",
    }  # fmt: skip
    assert envelope["metadata"]["actor"] == "admin"
    assert envelope["metadata"]["request_id"]
    streamed = await expect(
        await app_client.get(f"/api/events/?stream={envelope['stream']}", headers=ADMIN), 200
    )
    assert {item["stream"] for item in streamed["items"]} == {envelope["stream"]}


async def test_history_lists_the_account_and_its_destinations_after_deletion(
    app_client: Client,
) -> None:
    """An account's history is readable after it is deleted, in log order, with its
    destinations' events and none of its payloads."""
    ids = await _story(app_client)
    history = await expect(
        await app_client.get(f"/api/accounts/{ids['account']}/history/", headers=ADMIN), 200
    )
    types = [item["type"] for item in history["items"]]
    assert types == [
        "AccountCreated",
        "AccountUpdated",
        "DestinationCreated",
        "AccountTokenRotated",
        "DestinationDeleted",
        "AccountDeleted",
    ]
    positions = [item["position"] for item in history["items"]]
    assert positions == sorted(positions)
    missing = await app_client.get("/api/accounts/999/history/", headers=ADMIN)
    await expect_error(missing, 404, "not_found")


async def test_audit_answers_never_hold_an_account_token(app_client: Client) -> None:
    """No answer of the audit API contains a token that was handed out."""
    ids = await _story(app_client)
    answers = [
        await app_client.get("/api/events/?limit=1000", headers=ADMIN),
        await app_client.get(f"/api/accounts/{ids['account']}/history/", headers=ADMIN),
        await app_client.get(f"/api/accounts/{ids['account']}/?as_of=1", headers=ADMIN),
    ]
    for answer in answers:
        text = await answer.text()
        assert answer.status == 200
        for token in ids["tokens"]:
            assert token not in text


async def test_as_of_shows_a_changed_then_deleted_account_as_it_was(app_client: Client) -> None:
    """?as_of= a position or a time gives the account as it was then; 404 before it existed
    and after it was deleted."""
    ids = await _story(app_client)
    log = await log_of(app_client)
    created, updated = log[0], log[1]
    path = f"/api/accounts/{ids['account']}/"

    first = await expect(
        await app_client.get(f"{path}?as_of={created.position}", headers=ADMIN), 200
    )
    assert first["account_name"] == "Before"
    then = await expect(
        await app_client.get(f"{path}?as_of={updated.position}", headers=ADMIN), 200
    )
    assert then["account_name"] == "After"
    by_time = await app_client.get(path, params={"as_of": updated.recorded_at}, headers=ADMIN)
    assert (await expect(by_time, 200))["account_name"] == "After"

    await expect_error(await app_client.get(f"{path}?as_of=0", headers=ADMIN), 404, "not_found")
    await expect_error(await app_client.get(path, headers=ADMIN), 404, "not_found")
    latest = await app_client.get(f"{path}?as_of={log[-1].position}", headers=ADMIN)
    await expect_error(latest, 404, "not_found")
    bad = await app_client.get(f"{path}?as_of=yesterday", headers=ADMIN)
    await expect_error(bad, 400, "validation_error")


async def test_as_of_shows_a_deleted_destination(app_client: Client) -> None:
    """A destination deleted with its account still reads as it was before."""
    ids = await _story(app_client)
    [created] = [r for r in await log_of(app_client) if r.type == "DestinationCreated"]
    path = f"/api/destinations/{ids['destination']}/"
    then = await expect(
        await app_client.get(f"{path}?as_of={created.position}", headers=ADMIN), 200
    )
    assert then["url"] == "http://127.0.0.1:9/x"
    await expect_error(await app_client.get(path, headers=ADMIN), 404, "not_found")


async def _read_frames(response: ClientResponse, count: int) -> list[tuple[int, dict[str, Any]]]:
    """The next ``count`` server-sent events as (id, envelope), within a second each."""
    frames: list[tuple[int, dict[str, Any]]] = []
    event_id: int | None = None
    while len(frames) < count:
        line = (await asyncio.wait_for(response.content.readline(), 1.0)).decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            assert event_id is not None
            frames.append((event_id, json.loads(line[6:])))
    return frames


async def test_live_tail_delivers_new_events_within_a_second(app_client: Client) -> None:
    """The stream starts at the head, and each new event arrives within a second of its
    commit with its position as the SSE id."""
    await create_account(app_client)
    async with app_client.get("/api/events/stream/", headers=ADMIN) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        account = await create_account(app_client)
        [(event_id, envelope)] = await _read_frames(response, 1)
        assert envelope["type"] == "AccountCreated"
        assert envelope["data"]["account_id"] == account["id"]
        assert event_id == envelope["position"]


async def test_live_tail_resumes_without_gaps_or_repeats(app_client: Client) -> None:
    """Reconnecting with ?after= or Last-Event-ID continues right after the last event seen."""
    for _ in range(3):
        await create_account(app_client)
    async with app_client.get("/api/events/stream/?after=0", headers=ADMIN) as response:
        first = await _read_frames(response, 2)
    assert [event_id for event_id, _ in first] == [1, 2]
    last_seen = str(first[-1][0])
    await create_account(app_client)
    headers = {**ADMIN, "Last-Event-ID": last_seen}
    async with app_client.get("/api/events/stream/", headers=headers) as response:
        rest = await _read_frames(response, 2)
    assert [event_id for event_id, _ in rest] == [3, 4]
    async with app_client.get(f"/api/events/stream/?after={last_seen}", headers=ADMIN) as again:
        assert [event_id for event_id, _ in await _read_frames(again, 2)] == [3, 4]
    bad = await app_client.get("/api/events/stream/?after=x", headers=ADMIN)
    await expect_error(bad, 400, "validation_error")
