"""``/api/accounts/`` against the real app on a real SQLite file: answers and the log."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re

import pytest

from tests.functional.helpers import (
    ADMIN,
    TOKEN_HEADER,
    Client,
    create_account,
    create_destination,
    expect,
    expect_error,
    log_of,
    new_email,
    of_type,
)

ACCOUNT_KEYS = {"id", "email", "account_name", "website", "created_at", "updated_at"}
HOOK = "http://127.0.0.1:9/hook"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_create_answers_201_with_integer_id_and_token(app_client: Client) -> None:
    """POST /api/accounts/ answers 201 with the account, an integer id and a secret token."""
    response = await app_client.post(
        "/api/accounts/",
        json={"email": "ops@example.com", "account_name": "Ops", "website": "https://ops.example/"},
        headers=ADMIN,
    )
    body = await expect(response, 201)
    assert set(body) == ACCOUNT_KEYS | {"app_secret_token"}
    assert isinstance(body["id"], int)
    assert body["email"] == "ops@example.com"
    assert body["account_name"] == "Ops"
    assert body["website"] == "https://ops.example/"
    assert isinstance(body["app_secret_token"], str)
    assert len(body["app_secret_token"]) >= 32


async def test_create_records_one_account_created_with_the_token_digest(app_client: Client) -> None:
    """Creating an account appends one AccountCreated holding the token's SHA-256 only."""
    account = await create_account(app_client, email="a@example.com", account_name="A")
    [record] = await log_of(app_client)
    assert record.type == "AccountCreated"
    assert record.stream == f"account-{account['id']}"
    assert record.version == 1
    assert record.data["account_id"] == account["id"]
    assert record.data["email"] == "a@example.com"
    assert record.data["token_sha256"] == sha256(account["app_secret_token"])
    assert record.metadata["actor"] == "admin"


async def test_get_returns_the_account_without_its_token(app_client: Client) -> None:
    """GET /api/accounts/{id}/ answers 200 with the account and no app_secret_token."""
    created = await create_account(app_client, website="https://a.example/")
    body = await expect(await app_client.get(f"/api/accounts/{created['id']}/", headers=ADMIN), 200)
    assert set(body) == ACCOUNT_KEYS
    assert body == {k: v for k, v in created.items() if k != "app_secret_token"}


async def test_list_returns_every_live_account_without_tokens(app_client: Client) -> None:
    """GET /api/accounts/ lists the live accounts in id order, with no token in any item."""
    first = await create_account(app_client)
    second = await create_account(app_client)
    body = await expect(await app_client.get("/api/accounts/", headers=ADMIN), 200)
    assert set(body) == {"items", "next_after"}
    assert [item["id"] for item in body["items"]] == [first["id"], second["id"]]
    assert all(set(item) == ACCOUNT_KEYS for item in body["items"])
    assert body["next_after"] is None


async def test_put_replaces_every_field(app_client: Client) -> None:
    """PUT replaces the whole account: a field left out (website) is cleared."""
    created = await create_account(app_client, website="https://old.example/")
    response = await app_client.put(
        f"/api/accounts/{created['id']}/",
        json={"email": "new@example.com", "account_name": "New"},
        headers=ADMIN,
    )
    body = await expect(response, 200)
    assert body["email"] == "new@example.com"
    assert body["account_name"] == "New"
    assert body["website"] is None
    assert "app_secret_token" not in body
    updated = of_type(await log_of(app_client), "AccountUpdated")
    assert [r.data["email"] for r in updated] == ["new@example.com"]
    assert updated[0].version == 2


async def test_put_with_every_field_updates_the_account(app_client: Client) -> None:
    """PUT with every field answers 200 with the new values and appends one AccountUpdated."""
    created = await create_account(app_client, website="https://old.example/")
    response = await app_client.put(
        f"/api/accounts/{created['id']}/",
        json={"email": "put@example.com", "account_name": "Put", "website": None},
        headers=ADMIN,
    )
    body = await expect(response, 200)
    assert (body["email"], body["account_name"], body["website"]) == (
        "put@example.com",
        "Put",
        None,
    )
    assert "app_secret_token" not in body
    [updated] = of_type(await log_of(app_client), "AccountUpdated")
    assert updated.data["email"] == "put@example.com"
    assert updated.data["website"] is None
    assert updated.version == 2


async def test_patch_changes_only_the_given_fields(app_client: Client) -> None:
    """PATCH merges the given fields into the account and keeps the others."""
    created = await create_account(app_client, account_name="Old", website="https://a.example/")
    response = await app_client.patch(
        f"/api/accounts/{created['id']}/", json={"account_name": "Renamed"}, headers=ADMIN
    )
    body = await expect(response, 200)
    assert body["account_name"] == "Renamed"
    assert body["email"] == created["email"]
    assert body["website"] == "https://a.example/"
    assert "app_secret_token" not in body
    fetched = await expect(
        await app_client.get(f"/api/accounts/{created['id']}", headers=ADMIN), 200
    )
    assert fetched == body


async def test_update_without_change_records_nothing(app_client: Client) -> None:
    """A PATCH that changes nothing answers 200 and appends no event."""
    created = await create_account(app_client, account_name="Same")
    before = len(await log_of(app_client))
    response = await app_client.patch(
        f"/api/accounts/{created['id']}/", json={"account_name": "Same"}, headers=ADMIN
    )
    await expect(response, 200)
    assert len(await log_of(app_client)) == before


async def test_delete_removes_the_account_and_its_destinations_in_one_append(
    app_client: Client,
) -> None:
    """DELETE answers 204 and appends DestinationDeleted per destination then AccountDeleted,
    at consecutive positions in one transaction."""
    account = await create_account(app_client)
    other = await create_account(app_client)
    first = await create_destination(app_client, account["id"], HOOK)
    second = await create_destination(app_client, account["id"], HOOK + "2")
    kept = await create_destination(app_client, other["id"], HOOK)
    before = len(await log_of(app_client))

    response = await app_client.delete(f"/api/accounts/{account['id']}/", headers=ADMIN)
    assert response.status == 204
    assert await response.read() == b""

    appended = (await log_of(app_client))[before:]
    assert [r.type for r in appended] == [
        "DestinationDeleted",
        "DestinationDeleted",
        "AccountDeleted",
    ]
    assert {r.data["destination_id"] for r in appended[:2]} == {first["id"], second["id"]}
    assert appended[2].data["account_id"] == account["id"]
    positions = [r.position for r in appended]
    assert positions == list(range(positions[0], positions[0] + 3))
    assert len({r.recorded_at for r in appended}) == 1

    await expect_error(
        await app_client.get(f"/api/accounts/{account['id']}/", headers=ADMIN), 404, "not_found"
    )
    for destination in (first, second):
        await expect_error(
            await app_client.get(f"/api/destinations/{destination['id']}/", headers=ADMIN), 404
        )
    listed = await expect(await app_client.get("/api/destinations/", headers=ADMIN), 200)
    assert [item["id"] for item in listed["items"]] == [kept["id"]]
    accounts = await expect(await app_client.get("/api/accounts/", headers=ADMIN), 200)
    assert [item["id"] for item in accounts["items"]] == [other["id"]]


async def test_delete_without_destinations_records_only_account_deleted(
    app_client: Client,
) -> None:
    """Deleting an account that has no destinations appends AccountDeleted alone."""
    account = await create_account(app_client)
    response = await app_client.delete(f"/api/accounts/{account['id']}", headers=ADMIN)
    assert response.status == 204
    assert [r.type for r in await log_of(app_client)] == ["AccountCreated", "AccountDeleted"]


async def test_deleted_account_token_is_refused(app_client: Client) -> None:
    """After an account is deleted, its token gets 401 on /api/data/."""
    account = await create_account(app_client)
    await app_client.delete(f"/api/accounts/{account['id']}/", headers=ADMIN)
    response = await app_client.post(
        "/api/data/", json={"a": 1}, headers={TOKEN_HEADER: account["app_secret_token"]}
    )
    await expect_error(response, 401, "unauthorized")


async def test_deleted_account_email_can_be_used_again(app_client: Client) -> None:
    """A deleted account's email is free for a new account, which gets a new id."""
    first = await create_account(app_client, email="reuse@example.com")
    await app_client.delete(f"/api/accounts/{first['id']}/", headers=ADMIN)
    second = await create_account(app_client, email="reuse@example.com")
    assert second["id"] != first["id"]
    assert second["email"] == "reuse@example.com"


async def test_rotate_token_answers_a_new_token_and_retires_the_old(app_client: Client) -> None:
    """POST rotate-token answers 200 with a new token; the new one is accepted on /api/data/
    and the old one gets 401."""
    account = await create_account(app_client)
    old = account["app_secret_token"]
    response = await app_client.post(f"/api/accounts/{account['id']}/rotate-token/", headers=ADMIN)
    body = await expect(response, 200)
    new = body["app_secret_token"]
    assert isinstance(new, str)
    assert new != old
    assert body["id"] == account["id"]

    accepted = await app_client.post("/api/data/", json={"x": 1}, headers={TOKEN_HEADER: new})
    assert (await expect(accepted, 202))["status"] == "accepted"
    refused = await app_client.post("/api/data/", json={"x": 1}, headers={TOKEN_HEADER: old})
    await expect_error(refused, 401, "unauthorized")

    [rotated] = of_type(await log_of(app_client), "AccountTokenRotated")
    assert rotated.data["token_sha256"] == sha256(new)


async def test_token_is_shown_only_on_create_and_rotate(app_client: Client) -> None:
    """app_secret_token is in the create and rotate answers and in no other answer."""
    account = await create_account(app_client)
    path = f"/api/accounts/{account['id']}/"
    rotated = await expect(await app_client.post(path + "rotate-token/", headers=ADMIN), 200)
    assert "app_secret_token" in rotated
    answers = [
        await expect(await app_client.get(path, headers=ADMIN), 200),
        await expect(await app_client.patch(path, json={"account_name": "B"}, headers=ADMIN), 200),
        await expect(
            await app_client.put(
                path, json={"email": account["email"], "account_name": "C"}, headers=ADMIN
            ),
            200,
        ),
        *(await expect(await app_client.get("/api/accounts/", headers=ADMIN), 200))["items"],
    ]
    for answer in answers:
        assert "app_secret_token" not in answer
        text = json.dumps(answer)
        assert account["app_secret_token"] not in text
        assert rotated["app_secret_token"] not in text


async def test_log_never_holds_a_token_in_the_clear(app_client: Client) -> None:
    """No event's data or metadata contains a token; the log keeps only their SHA-256."""
    account = await create_account(app_client)
    rotated = await expect(
        await app_client.post(f"/api/accounts/{account['id']}/rotate-token/", headers=ADMIN), 200
    )
    tokens = [account["app_secret_token"], rotated["app_secret_token"]]
    records = await log_of(app_client)
    assert [r.type for r in records] == ["AccountCreated", "AccountTokenRotated"]
    for record in records:
        text = json.dumps(record.envelope())
        for token in tokens:
            assert token not in text
    assert [r.data["token_sha256"] for r in records] == [sha256(t) for t in tokens]


async def test_account_destinations_lists_only_that_accounts(app_client: Client) -> None:
    """GET /api/accounts/{id}/destinations/ lists that account's destinations only."""
    account = await create_account(app_client)
    other = await create_account(app_client)
    mine = [await create_destination(app_client, account["id"], HOOK) for _ in range(2)]
    await create_destination(app_client, other["id"], HOOK)
    body = await expect(
        await app_client.get(f"/api/accounts/{account['id']}/destinations/", headers=ADMIN), 200
    )
    assert body == {"items": mine, "next_after": None}


async def test_account_destinations_of_unknown_account_is_404(app_client: Client) -> None:
    """GET /api/accounts/{id}/destinations/ for an unknown account answers 404."""
    response = await app_client.get("/api/accounts/999/destinations/", headers=ADMIN)
    await expect_error(response, 404, "not_found")


@pytest.mark.parametrize("count", [4, 5])
async def test_pagination_walks_every_page(app_client: Client, count: int) -> None:
    """?limit=2 walks every account exactly once, and next_after is null on the last page."""
    created = [(await create_account(app_client))["id"] for _ in range(count)]
    seen: list[int] = []
    pages: list[list[int]] = []
    after: int | None = None
    while True:
        query = "?limit=2" if after is None else f"?limit=2&after={after}"
        page = await expect(await app_client.get("/api/accounts/" + query, headers=ADMIN), 200)
        ids = [item["id"] for item in page["items"]]
        pages.append(ids)
        seen += ids
        after = page["next_after"]
        if after is None:
            break
        assert after == ids[-1]
    assert seen == created
    assert [len(ids) for ids in pages] == [2] * (count // 2) + ([1] if count % 2 else [])


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1"])
async def test_bad_limit_is_400(app_client: Client, limit: str) -> None:
    """A limit outside 1..1000, or not an integer, answers 400 in the error shape."""
    response = await app_client.get(f"/api/accounts/?limit={limit}", headers=ADMIN)
    body = await expect_error(response, 400)
    assert "limit" in json.dumps(body)


async def test_limit_bounds_are_accepted(app_client: Client) -> None:
    """limit=1 and limit=1000 are accepted."""
    await create_account(app_client)
    for limit in (1, 1000):
        response = await app_client.get(f"/api/accounts/?limit={limit}", headers=ADMIN)
        assert len((await expect(response, 200))["items"]) == 1


@pytest.mark.parametrize("slash", ["/", ""])
async def test_paths_work_with_and_without_trailing_slash(app_client: Client, slash: str) -> None:
    """Every account path is served with and without its trailing slash."""
    account = await create_account(app_client)
    base = f"/api/accounts/{account['id']}"
    await expect(await app_client.get("/api/accounts" + slash, headers=ADMIN), 200)
    created = await app_client.post(
        "/api/accounts" + slash,
        json={"email": new_email(), "account_name": "X"},
        headers=ADMIN,
    )
    await expect(created, 201)
    await expect(await app_client.get(base + slash, headers=ADMIN), 200)
    await expect(
        await app_client.patch(base + slash, json={"account_name": "Y"}, headers=ADMIN), 200
    )
    await expect(
        await app_client.put(
            base + slash, json={"email": account["email"], "account_name": "Z"}, headers=ADMIN
        ),
        200,
    )
    await expect(await app_client.post(f"{base}/rotate-token{slash}", headers=ADMIN), 200)
    await expect(await app_client.get(f"{base}/destinations{slash}", headers=ADMIN), 200)
    response = await app_client.delete(base + slash, headers=ADMIN)
    assert response.status == 204


async def test_concurrent_creates_with_one_email_admit_exactly_one(app_client: Client) -> None:
    """Ten simultaneous creates with the same email give one 201 and nine 409, and the log
    holds exactly one AccountCreated."""

    async def create() -> int:
        response = await app_client.post(
            "/api/accounts/",
            json={"email": "race@example.com", "account_name": "Race"},
            headers=ADMIN,
        )
        await response.read()
        if response.status == 409:
            await expect_error(response, 409, "duplicate_email")
        return response.status

    statuses = await asyncio.gather(*(create() for _ in range(10)))
    assert sorted(statuses) == [201] + [409] * 9
    created = of_type(await log_of(app_client), "AccountCreated")
    assert len(created) == 1
    assert created[0].data["email"] == "race@example.com"


async def test_concurrent_creates_with_distinct_emails_all_succeed(app_client: Client) -> None:
    """Ten simultaneous creates with distinct emails all answer 201 with distinct ids."""

    async def create(n: int) -> int:
        response = await app_client.post(
            "/api/accounts/",
            json={"email": f"many{n}@example.com", "account_name": f"N{n}"},
            headers=ADMIN,
        )
        body = await expect(response, 201)
        return int(body["id"])

    ids = await asyncio.gather(*(create(n) for n in range(10)))
    assert len(set(ids)) == 10
    created = of_type(await log_of(app_client), "AccountCreated")
    assert sorted(r.data["account_id"] for r in created) == sorted(ids)
    listed = await expect(await app_client.get("/api/accounts/", headers=ADMIN), 200)
    assert sorted(item["id"] for item in listed["items"]) == sorted(ids)


async def test_response_carries_a_request_id(app_client: Client) -> None:
    """Every answer, success or error, carries an X-Request-ID header."""
    ok = await app_client.get("/api/accounts/", headers=ADMIN)
    refused = await app_client.get("/api/accounts/")
    missing = await app_client.get("/nowhere")
    for response in (ok, refused, missing):
        assert response.headers.get("X-Request-ID")
    assert ok.headers["X-Request-ID"] != refused.headers["X-Request-ID"]


async def test_given_request_id_is_echoed_and_recorded(app_client: Client) -> None:
    """A valid X-Request-ID is echoed in the answer and stored in the metadata of the events
    that request appended."""
    account = await create_account(app_client)
    await create_destination(app_client, account["id"], HOOK)
    before = len(await log_of(app_client))
    response = await app_client.delete(
        f"/api/accounts/{account['id']}/", headers={**ADMIN, "X-Request-ID": "req-42.abc_Z"}
    )
    assert response.status == 204
    assert response.headers["X-Request-ID"] == "req-42.abc_Z"
    appended = (await log_of(app_client))[before:]
    assert len(appended) == 2
    assert all(r.metadata["request_id"] == "req-42.abc_Z" for r in appended)
    assert all(r.metadata["actor"] == "admin" for r in appended)


async def test_generated_request_id_is_recorded(app_client: Client) -> None:
    """Without X-Request-ID, the generated id in the answer is the one in the event metadata."""
    response = await app_client.post(
        "/api/accounts/", json={"email": new_email(), "account_name": "G"}, headers=ADMIN
    )
    await expect(response, 201)
    [record] = await log_of(app_client)
    assert record.metadata["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize("given", ["has space", "x" * 65, "semi;colon"])
async def test_invalid_request_id_is_replaced(app_client: Client, given: str) -> None:
    """An X-Request-ID that is not 1-64 of [A-Za-z0-9._-] is replaced by a generated one."""
    response = await app_client.get("/api/accounts/", headers={**ADMIN, "X-Request-ID": given})
    await expect(response, 200)
    echoed = response.headers["X-Request-ID"]
    assert echoed != given
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", echoed)


async def test_many_concurrent_creates_with_distinct_emails_all_succeed(
    app_client: Client,
) -> None:
    """Thirty simultaneous creates with distinct emails all answer 201 with distinct ids."""

    async def create(n: int) -> int:
        response = await app_client.post(
            "/api/accounts/",
            json={"email": f"crowd{n}@example.com", "account_name": f"C{n}"},
            headers=ADMIN,
        )
        await response.read()
        return response.status

    statuses = await asyncio.gather(*(create(n) for n in range(30)))
    assert statuses == [201] * 30
