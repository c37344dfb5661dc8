"""``Idempotency-Key`` on ``POST /api/data/``: a repeat answers the first answer and sends
nothing new; a key is per account; a different body under the same key is a conflict."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.functional.helpers import (
    TOKEN_HEADER,
    Client,
    account_with_destination,
    create_account,
    expect_error,
    log_of,
    log_unchanged,
    of_type,
    wait_for_outcomes,
)
from tests.sink import Sink

KEY_HEADER = "Idempotency-Key"


async def post_data(
    client: Client, token: str, body: str, key: str | None = None
) -> tuple[int, Any]:
    """POST ``body`` (raw JSON text) to /api/data/ with the token and the key, if any;
    returns the status and the decoded answer."""
    headers = {TOKEN_HEADER: token, "Content-Type": "application/json"}
    if key is not None:
        headers[KEY_HEADER] = key
    response = await client.post("/api/data/", data=body.encode(), headers=headers)
    return response.status, json.loads(await response.read())


async def test_repeat_with_same_key_answers_the_first_answer(
    app_client: Client, sink: Sink
) -> None:
    """A repeat with the same key and the same body, even with its keys reordered and spaced
    differently, answers 200 with exactly the first 202's body, records no second payload,
    and the sink receives the payload once."""
    account, _ = await account_with_destination(app_client, sink.url("/hook"))
    token = account["app_secret_token"]
    first_status, first = await post_data(
        app_client, token, '{"order": 7, "items": [1, 2], "meta": {"a": 1, "b": 2}}', "order-7"
    )
    assert first_status == 202
    again_status, again = await post_data(
        app_client, token, '{"meta":{"b":2,"a":1},\n "items":[1,2],"order":7}', "order-7"
    )
    assert again_status == 200
    assert again == first

    await wait_for_outcomes(app_client, first["payload_id"], 1)
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.data["payload_id"] == first["payload_id"]
    assert received.data["idempotency_key"] == "order-7"
    assert sink.by_webhook_id() == {first["payload_id"]: 1}


async def test_same_key_with_another_body_is_a_conflict(app_client: Client) -> None:
    """The same key with a different body answers 409 in the error shape and records
    nothing."""
    account = await create_account(app_client)
    token = account["app_secret_token"]
    status, _ = await post_data(app_client, token, '{"order": 7}', "order-7")
    assert status == 202
    async with log_unchanged(app_client):
        response = await app_client.post(
            "/api/data/",
            json={"order": 8},
            headers={TOKEN_HEADER: token, KEY_HEADER: "order-7"},
        )
        await expect_error(response, 409, "idempotency_key_reused")


async def test_keys_are_per_account(app_client: Client) -> None:
    """Two accounts using the same key and body each get their own payload."""
    accounts = [await create_account(app_client) for _ in range(2)]
    answers = [
        await post_data(app_client, account["app_secret_token"], '{"n": 1}', "shared")
        for account in accounts
    ]
    assert [status for status, _ in answers] == [202, 202]
    assert answers[0][1]["payload_id"] != answers[1][1]["payload_id"]
    received = of_type(await log_of(app_client), "PayloadReceived")
    assert [r.data["account_id"] for r in received] == [a["id"] for a in accounts]
    assert [r.data["payload_id"] for r in received] == [body["payload_id"] for _, body in answers]


async def test_simultaneous_repeats_record_one_payload(app_client: Client, sink: Sink) -> None:
    """Twenty simultaneous requests with one key and body get exactly one 202 and nineteen
    200s naming the same payload, and only one payload is recorded and sent."""
    account, _ = await account_with_destination(app_client, sink.url("/hook"))
    token = account["app_secret_token"]
    answers = await asyncio.gather(
        *(post_data(app_client, token, '{"n": 1}', "burst") for _ in range(20))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * 19 + [202]
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.data["payload_id"] == answers[0][1]["payload_id"]
    await wait_for_outcomes(app_client, received.data["payload_id"], 1)
    assert sink.by_webhook_id() == {received.data["payload_id"]: 1}


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "k" * 300, "has space", "tab\tinside", ""],
    ids=["256-chars", "300-chars", "space", "tab", "empty"],
)
async def test_invalid_key_is_400(app_client: Client, key: str) -> None:
    """A key that is empty, longer than 255 characters or not visible ASCII answers 400 in
    the error shape and records nothing."""
    account = await create_account(app_client)
    async with log_unchanged(app_client):
        response = await app_client.post(
            "/api/data/",
            json={"n": 1},
            headers={TOKEN_HEADER: account["app_secret_token"], KEY_HEADER: key},
        )
        await expect_error(response, 400)


async def test_longest_key_is_accepted(app_client: Client) -> None:
    """A key of 255 visible ASCII characters is accepted and recognised on a repeat."""
    account = await create_account(app_client)
    token = account["app_secret_token"]
    key = "!~" + "k" * 253
    first_status, first = await post_data(app_client, token, '{"n": 1}', key)
    again_status, again = await post_data(app_client, token, '{"n": 1}', key)
    assert (first_status, again_status) == (202, 200)
    assert again == first


async def test_without_a_key_every_request_is_a_new_payload(app_client: Client) -> None:
    """Without a key the same body sent twice is two payloads."""
    account = await create_account(app_client)
    token = account["app_secret_token"]
    answers = [await post_data(app_client, token, '{"n": 1}') for _ in range(2)]
    assert [status for status, _ in answers] == [202, 202]
    assert answers[0][1]["payload_id"] != answers[1][1]["payload_id"]
    received = of_type(await log_of(app_client), "PayloadReceived")
    assert [r.data["idempotency_key"] for r in received] == [None, None]
