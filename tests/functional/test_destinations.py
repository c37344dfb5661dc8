"""``/api/destinations/`` against the real app: CRUD, enable/disable, lists, the SSRF guard."""

from __future__ import annotations

import asyncio

import pytest

from tests.functional.conftest import MakeClient
from tests.functional.helpers import (
    ADMIN,
    Client,
    create_account,
    create_destination,
    expect,
    expect_error,
    log_of,
    of_type,
)

DESTINATION_KEYS = {
    "id",
    "account",
    "url",
    "http_method",
    "headers",
    "enabled",
    "disabled_reason",
    "created_at",
    "updated_at",
}
HOOK = "http://127.0.0.1:9/hook"


async def test_create_answers_201_with_the_destination(app_client: Client) -> None:
    """POST /api/destinations/ answers 201 with the destination, an integer id, enabled."""
    account = await create_account(app_client)
    response = await app_client.post(
        "/api/destinations/",
        json={
            "account": account["id"],
            "url": HOOK,
            "http_method": "PUT",
            "headers": {"X-Api-Key": "k1", "Authorization": "Bearer sink"},
        },
        headers=ADMIN,
    )
    body = await expect(response, 201)
    assert set(body) == DESTINATION_KEYS
    assert isinstance(body["id"], int)
    assert body["account"] == account["id"]
    assert body["url"] == HOOK
    assert body["http_method"] == "PUT"
    assert body["headers"] == {"X-Api-Key": "k1", "Authorization": "Bearer sink"}
    assert body["enabled"] is True
    assert body["disabled_reason"] is None


async def test_create_records_destination_created(app_client: Client) -> None:
    """Creating a destination appends one DestinationCreated with its fields, headers as given."""
    account = await create_account(app_client)
    created = await create_destination(
        app_client, account["id"], HOOK, http_method="GET", headers={"X-A": "1"}
    )
    [record] = of_type(await log_of(app_client), "DestinationCreated")
    assert record.stream == f"destination-{created['id']}"
    assert record.data["destination_id"] == created["id"]
    assert record.data["account_id"] == account["id"]
    assert record.data["url"] == HOOK
    assert record.data["http_method"] == "GET"
    assert record.data["headers"] == {"X-A": "1"}
    assert record.metadata["actor"] == "admin"


async def test_create_accepts_lowercase_method_and_string_account(app_client: Client) -> None:
    """http_method is case-insensitive and the account id may be sent as digits in a string."""
    account = await create_account(app_client)
    response = await app_client.post(
        "/api/destinations/",
        json={"account": str(account["id"]), "url": HOOK, "http_method": "post"},
        headers=ADMIN,
    )
    body = await expect(response, 201)
    assert body["http_method"] == "POST"
    assert body["account"] == account["id"]
    assert body["headers"] == {}


async def test_get_returns_the_destination(app_client: Client) -> None:
    """GET /api/destinations/{id}/ answers 200 with what the create answered."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK, headers={"X-B": "2"})
    fetched = await expect(
        await app_client.get(f"/api/destinations/{created['id']}/", headers=ADMIN), 200
    )
    assert fetched == created


async def test_list_filters_by_account(app_client: Client) -> None:
    """GET /api/destinations/ lists all destinations; ?account= only that account's."""
    first = await create_account(app_client)
    second = await create_account(app_client)
    a = await create_destination(app_client, first["id"], HOOK)
    b = await create_destination(app_client, second["id"], HOOK)
    c = await create_destination(app_client, first["id"], HOOK)
    everything = await expect(await app_client.get("/api/destinations/", headers=ADMIN), 200)
    assert everything == {"items": [a, b, c], "next_after": None}
    only = await expect(
        await app_client.get(f"/api/destinations/?account={first['id']}", headers=ADMIN), 200
    )
    assert only == {"items": [a, c], "next_after": None}
    none = await expect(await app_client.get("/api/destinations/?account=999", headers=ADMIN), 200)
    assert none == {"items": [], "next_after": None}


async def test_list_with_bad_account_filter_is_400(app_client: Client) -> None:
    """?account= that is not a positive integer answers 400 in the error shape."""
    response = await app_client.get("/api/destinations/?account=abc", headers=ADMIN)
    await expect_error(response, 400, "validation_error")


async def test_pagination_walks_every_page(app_client: Client) -> None:
    """?limit=2 walks all five destinations once and next_after is null on the last page."""
    account = await create_account(app_client)
    created = [(await create_destination(app_client, account["id"], HOOK))["id"] for _ in range(5)]
    for base in ("/api/destinations/", f"/api/accounts/{account['id']}/destinations/"):
        seen: list[int] = []
        sizes: list[int] = []
        after: int | None = None
        while True:
            query = "?limit=2" if after is None else f"?limit=2&after={after}"
            page = await expect(await app_client.get(base + query, headers=ADMIN), 200)
            seen += [item["id"] for item in page["items"]]
            sizes.append(len(page["items"]))
            after = page["next_after"]
            if after is None:
                break
        assert seen == created
        assert sizes == [2, 2, 1]


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
async def test_bad_limit_is_400(app_client: Client, limit: str) -> None:
    """A bad ?limit= on the destination lists answers 400 in the error shape."""
    account = await create_account(app_client)
    for base in ("/api/destinations/", f"/api/accounts/{account['id']}/destinations/"):
        response = await app_client.get(f"{base}?limit={limit}", headers=ADMIN)
        await expect_error(response, 400)


async def test_put_replaces_the_destination(app_client: Client) -> None:
    """PUT with every field answers 200 with the new values and appends DestinationUpdated."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK, headers={"X-Old": "1"})
    response = await app_client.put(
        f"/api/destinations/{created['id']}/",
        json={
            "account": account["id"],
            "url": "http://127.0.0.1:9/other",
            "http_method": "GET",
            "headers": {"X-New": "2"},
        },
        headers=ADMIN,
    )
    body = await expect(response, 200)
    assert body["url"] == "http://127.0.0.1:9/other"
    assert body["http_method"] == "GET"
    assert body["headers"] == {"X-New": "2"}
    [updated] = of_type(await log_of(app_client), "DestinationUpdated")
    assert updated.data["headers"] == {"X-New": "2"}
    assert updated.data["url"] == "http://127.0.0.1:9/other"


async def test_put_without_headers_clears_them(app_client: Client) -> None:
    """PUT replaces the whole destination: headers left out become {}."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK, headers={"X-Old": "1"})
    response = await app_client.put(
        f"/api/destinations/{created['id']}/",
        json={"account": account["id"], "url": HOOK, "http_method": "POST"},
        headers=ADMIN,
    )
    body = await expect(response, 200)
    assert body["headers"] == {}


async def test_put_can_move_the_destination_to_another_account(app_client: Client) -> None:
    """PUT naming another live account moves the destination to it."""
    first = await create_account(app_client)
    second = await create_account(app_client)
    created = await create_destination(app_client, first["id"], HOOK)
    response = await app_client.put(
        f"/api/destinations/{created['id']}",
        json={"account": second["id"], "url": HOOK, "http_method": "POST"},
        headers=ADMIN,
    )
    assert (await expect(response, 200))["account"] == second["id"]
    mine = await expect(
        await app_client.get(f"/api/accounts/{second['id']}/destinations/", headers=ADMIN), 200
    )
    assert [item["id"] for item in mine["items"]] == [created["id"]]


async def test_patch_changes_only_the_given_fields(app_client: Client) -> None:
    """PATCH merges the given fields and keeps the others."""
    account = await create_account(app_client)
    created = await create_destination(
        app_client, account["id"], HOOK, http_method="PUT", headers={"X-Keep": "1"}
    )
    response = await app_client.patch(
        f"/api/destinations/{created['id']}/", json={"url": HOOK + "/v2"}, headers=ADMIN
    )
    body = await expect(response, 200)
    assert body["url"] == HOOK + "/v2"
    assert body["http_method"] == "PUT"
    assert body["headers"] == {"X-Keep": "1"}
    assert body["account"] == account["id"]


async def test_delete_answers_204_and_records_destination_deleted(app_client: Client) -> None:
    """DELETE answers 204 with no body; the destination is gone and the log says so."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK)
    response = await app_client.delete(f"/api/destinations/{created['id']}/", headers=ADMIN)
    assert response.status == 204
    assert await response.read() == b""
    await expect_error(
        await app_client.get(f"/api/destinations/{created['id']}/", headers=ADMIN), 404
    )
    [deleted] = of_type(await log_of(app_client), "DestinationDeleted")
    assert deleted.data == {"destination_id": created["id"], "account_id": account["id"]}
    listed = await expect(await app_client.get("/api/destinations/", headers=ADMIN), 200)
    assert listed["items"] == []


async def test_disable_and_enable(app_client: Client) -> None:
    """POST disable/ answers 200 with enabled false (reason manual); enable/ turns it back on;
    each appends its event."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK)
    path = f"/api/destinations/{created['id']}"
    disabled = await expect(await app_client.post(path + "/disable/", headers=ADMIN), 200)
    assert disabled["enabled"] is False
    assert disabled["disabled_reason"] == "manual"
    shown = await expect(await app_client.get(path + "/", headers=ADMIN), 200)
    assert shown["enabled"] is False
    enabled = await expect(await app_client.post(path + "/enable", headers=ADMIN), 200)
    assert enabled["enabled"] is True
    assert enabled["disabled_reason"] is None
    records = of_type(await log_of(app_client), "DestinationDisabled", "DestinationEnabled")
    assert [r.type for r in records] == ["DestinationDisabled", "DestinationEnabled"]
    assert records[0].data["reason"] == "manual"


async def test_disabling_twice_records_once(app_client: Client) -> None:
    """Disabling a disabled destination answers 200 and appends nothing more."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], HOOK)
    path = f"/api/destinations/{created['id']}/disable/"
    await expect(await app_client.post(path, headers=ADMIN), 200)
    before = len(await log_of(app_client))
    again = await expect(await app_client.post(path, headers=ADMIN), 200)
    assert again["enabled"] is False
    assert len(await log_of(app_client)) == before


@pytest.mark.parametrize("slash", ["/", ""])
async def test_paths_work_with_and_without_trailing_slash(app_client: Client, slash: str) -> None:
    """Every destination path is served with and without its trailing slash."""
    account = await create_account(app_client)
    body = {"account": account["id"], "url": HOOK, "http_method": "POST"}
    created = await expect(
        await app_client.post("/api/destinations" + slash, json=body, headers=ADMIN), 201
    )
    base = f"/api/destinations/{created['id']}"
    await expect(await app_client.get("/api/destinations" + slash, headers=ADMIN), 200)
    await expect(
        await app_client.get(f"/api/destinations{slash}?account={account['id']}", headers=ADMIN),
        200,
    )
    await expect(await app_client.get(base + slash, headers=ADMIN), 200)
    await expect(await app_client.put(base + slash, json=body, headers=ADMIN), 200)
    await expect(await app_client.patch(base + slash, json={"url": HOOK + "x"}, headers=ADMIN), 200)
    await expect(await app_client.post(f"{base}/disable{slash}", headers=ADMIN), 200)
    await expect(await app_client.post(f"{base}/enable{slash}", headers=ADMIN), 200)
    response = await app_client.delete(base + slash, headers=ADMIN)
    assert response.status == 204


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://[::1]/x",
        "http://169.254.169.254/",
        "http://localhost/",
        "http://10.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/x",
    ],
)
async def test_guard_refuses_non_global_literal_hosts(make_client: MakeClient, url: str) -> None:
    """With private destinations off, a URL whose host is a non-global address or localhost is
    400 validation_error on "url", and nothing about it is logged."""
    client = await make_client(allow_private_destinations=False)
    account = await create_account(client)
    head = len(await log_of(client))
    for method, path in (
        ("POST", "/api/destinations/"),
        ("PUT", "/api/destinations/{id}/"),
        ("PATCH", "/api/destinations/{id}/"),
    ):
        if "{id}" in path:
            existing = await create_destination(client, account["id"], "http://example.com/")
            path = path.format(id=existing["id"])
            head = len(await log_of(client))
        response = await client.request(
            method,
            path,
            json={"account": account["id"], "url": url, "http_method": "POST"},
            headers=ADMIN,
        )
        error = await expect_error(response, 400, "validation_error")
        assert [d["field"] for d in error["details"]] == ["url"], error
        assert len(await log_of(client)) == head
        assert all(url not in str(r.data) for r in await log_of(client))


async def test_many_concurrent_creates_all_succeed(app_client: Client) -> None:
    """Thirty simultaneous destination creates all answer 201 with distinct ids."""
    account = await create_account(app_client)

    async def create(n: int) -> int:
        response = await app_client.post(
            "/api/destinations/",
            json={"account": account["id"], "url": f"{HOOK}/{n}", "http_method": "POST"},
            headers=ADMIN,
        )
        await response.read()
        return response.status

    statuses = await asyncio.gather(*(create(n) for n in range(30)))
    assert statuses == [201] * 30


async def test_concurrent_creates_all_succeed_with_distinct_ids(app_client: Client) -> None:
    """Ten simultaneous destination creates all answer 201 with distinct ids."""
    account = await create_account(app_client)

    async def create(n: int) -> int:
        body = {"account": account["id"], "url": f"{HOOK}/{n}", "http_method": "POST"}
        response = await app_client.post("/api/destinations/", json=body, headers=ADMIN)
        return int((await expect(response, 201))["id"])

    ids = await asyncio.gather(*(create(n) for n in range(10)))
    assert len(set(ids)) == 10


async def test_guard_accepts_a_name_at_creation(make_client: MakeClient) -> None:
    """With private destinations off, a destination whose host is a name is accepted
    (names are checked when resolved at send time)."""
    client = await make_client(allow_private_destinations=False)
    account = await create_account(client)
    created = await create_destination(client, account["id"], "http://example.com/")
    assert created["url"] == "http://example.com/"
    [record] = of_type(await log_of(client), "DestinationCreated")
    assert record.data["url"] == "http://example.com/"


async def test_loopback_is_accepted_when_private_destinations_are_allowed(
    app_client: Client,
) -> None:
    """With allow_private_destinations, a loopback destination is accepted."""
    account = await create_account(app_client)
    created = await create_destination(app_client, account["id"], "http://127.0.0.1:9/x")
    assert created["url"] == "http://127.0.0.1:9/x"
