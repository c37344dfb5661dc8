"""The in-memory token directory of /api/data/ never serves a stale account or fan-out."""

from __future__ import annotations

from tests.functional.helpers import (
    ADMIN,
    TOKEN_HEADER,
    Client,
    create_account,
    create_destination,
    expect,
    expect_error,
    send_data,
)


async def test_a_destination_added_after_a_payload_gets_the_next_one(app_client: Client) -> None:
    """Once a payload has been accepted (the account is in memory), a destination created
    next is part of the very next payload's fan-out."""
    account = await create_account(app_client)
    token = account["app_secret_token"]
    first = await send_data(app_client, token, {"n": 1})
    assert first["destinations"] == 0
    await create_destination(app_client, account["id"], "http://127.0.0.1:9/a")
    second = await send_data(app_client, token, {"n": 2})
    assert second["destinations"] == 1


async def test_a_rotated_or_deleted_account_token_stops_at_once(app_client: Client) -> None:
    """A token that was just used stops working as soon as it is rotated, and the new one
    stops as soon as the account is deleted."""
    account = await create_account(app_client)
    old = account["app_secret_token"]
    await send_data(app_client, old, {"n": 1})
    path = f"/api/accounts/{account['id']}/"
    rotated = await expect(await app_client.post(f"{path}rotate-token/", headers=ADMIN), 200)
    refused = await app_client.post("/api/data/", json={"n": 2}, headers={TOKEN_HEADER: old})
    await expect_error(refused, 401, "unauthorized")
    new = rotated["app_secret_token"]
    await send_data(app_client, new, {"n": 3})
    await expect(await app_client.delete(path, headers=ADMIN), 204)
    gone = await app_client.post("/api/data/", json={"n": 4}, headers={TOKEN_HEADER: new})
    await expect_error(gone, 401, "unauthorized")
