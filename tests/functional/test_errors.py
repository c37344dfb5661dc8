"""Every bad request of the HTTP contract: its status, the one error shape, and an untouched log."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.functional.conftest import MakeClient
from tests.functional.helpers import (
    ADMIN,
    TOKEN_HEADER,
    Client,
    create_account,
    create_destination,
    detail_fields,
    expect,
    expect_error,
    log_unchanged,
    new_email,
)

HOOK = "http://127.0.0.1:9/hook"


async def _world(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
    """An account with one destination, so that ids in paths exist."""
    account = await create_account(client)
    destination = await create_destination(client, account["id"], HOOK)
    return account, destination


def _bodies(account_id: int) -> dict[str, dict[str, Any]]:
    return {
        "account": {"email": new_email(), "account_name": "Valid"},
        "destination": {"account": account_id, "url": HOOK, "http_method": "POST"},
    }


# (method, path, body kind) for every management route; {a} and {d} are existing ids
MANAGEMENT = [
    ("GET", "/api/accounts/", None),
    ("POST", "/api/accounts/", "account"),
    ("GET", "/api/accounts/{a}/", None),
    ("PUT", "/api/accounts/{a}/", "account"),
    ("PATCH", "/api/accounts/{a}/", "account"),
    ("DELETE", "/api/accounts/{a}/", None),
    ("POST", "/api/accounts/{a}/rotate-token/", None),
    ("GET", "/api/accounts/{a}/destinations/", None),
    ("GET", "/api/destinations/", None),
    ("GET", "/api/destinations/?account={a}", None),
    ("POST", "/api/destinations/", "destination"),
    ("GET", "/api/destinations/{d}/", None),
    ("PUT", "/api/destinations/{d}/", "destination"),
    ("PATCH", "/api/destinations/{d}/", "destination"),
    ("DELETE", "/api/destinations/{d}/", None),
    ("POST", "/api/destinations/{d}/enable/", None),
    ("POST", "/api/destinations/{d}/disable/", None),
]

# the endpoints that read a JSON object body
WITH_BODY = [
    ("POST", "/api/accounts/"),
    ("PUT", "/api/accounts/{a}/"),
    ("PATCH", "/api/accounts/{a}/"),
    ("POST", "/api/destinations/"),
    ("PUT", "/api/destinations/{d}/"),
    ("PATCH", "/api/destinations/{d}/"),
    ("POST", "/api/data/"),
]


def _headers_for(path: str, account: dict[str, Any]) -> dict[str, str]:
    if path.startswith("/api/data"):
        return {TOKEN_HEADER: account["app_secret_token"]}
    return dict(ADMIN)


@pytest.mark.parametrize(("method", "path", "kind"), MANAGEMENT)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", "Bearer ", "Basic test-admin", "test-admin", "Bearer test-admin-x"],
)
async def test_management_needs_the_admin_token(
    app_client: Client, method: str, path: str, kind: str | None, authorization: str | None
) -> None:
    """A management endpoint without Authorization, or with anything but the admin bearer
    token, answers 401 in the error shape and records nothing."""
    account, destination = await _world(app_client)
    url = path.format(a=account["id"], d=destination["id"])
    headers = {} if authorization is None else {"Authorization": authorization}
    body = _bodies(account["id"])[kind] if kind else None
    async with log_unchanged(app_client):
        response = await app_client.request(method, url, json=body, headers=headers)
        await expect_error(response, 401, "unauthorized")


async def test_account_token_is_not_an_admin_token(app_client: Client) -> None:
    """An account's CL-X-TOKEN, given as a bearer token, does not open management endpoints."""
    account = await create_account(app_client)
    response = await app_client.get(
        "/api/accounts/", headers={"Authorization": f"Bearer {account['app_secret_token']}"}
    )
    await expect_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [{}, {TOKEN_HEADER: ""}, {TOKEN_HEADER: "unknown-token"}, {TOKEN_HEADER: "test-admin"}, ADMIN],
    ids=["missing", "empty", "unknown", "admin-token", "admin-bearer-only"],
)
async def test_data_needs_a_known_account_token(
    app_client: Client, headers: dict[str, str]
) -> None:
    """/api/data/ without CL-X-TOKEN, or with one no live account has, answers 401 and records
    nothing."""
    await _world(app_client)
    async with log_unchanged(app_client):
        response = await app_client.post("/api/data/", json={"a": 1}, headers=headers)
        await expect_error(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"\xff\xfe{}", b'{"a": 1', b"{'a': 1}"], ids=repr
)
async def test_body_that_is_not_json_is_400(
    app_client: Client, method: str, path: str, raw: bytes
) -> None:
    """A body that is not JSON answers 400 bad_request and records nothing."""
    account, destination = await _world(app_client)
    url = path.format(a=account["id"], d=destination["id"])
    headers = {**_headers_for(path, account), "Content-Type": "application/json"}
    async with log_unchanged(app_client):
        response = await app_client.request(method, url, data=raw, headers=headers)
        await expect_error(response, 400, "bad_request")


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
@pytest.mark.parametrize("value", [[], [{"a": 1}], "text", 42, 1.5, None, True])
async def test_json_that_is_not_an_object_is_400(
    app_client: Client, method: str, path: str, value: Any
) -> None:
    """A JSON body that is not an object (list, string, number, null, boolean) answers 400 and
    records nothing."""
    account, destination = await _world(app_client)
    url = path.format(a=account["id"], d=destination["id"])
    async with log_unchanged(app_client):
        response = await app_client.request(
            method,
            url,
            data=json.dumps(value),
            headers={**_headers_for(path, account), "Content-Type": "application/json"},
        )
        await expect_error(response, 400, "bad_request")


ACCOUNT_INVALID = [
    ({"email": "not-an-email", "account_name": "A"}, "email"),
    ({"email": "a@", "account_name": "A"}, "email"),
    ({"account_name": "A"}, "email"),
    ({"email": "ok@example.com"}, "account_name"),
    ({"email": "ok@example.com", "account_name": ""}, "account_name"),
    ({"email": "ok@example.com", "account_name": "x" * 201}, "account_name"),
    ({"email": "ok@example.com", "account_name": 7}, "account_name"),
    ({"email": "ok@example.com", "account_name": "A", "website": "not a url"}, "website"),
    ({"email": "ok@example.com", "account_name": "A", "website": "ftp://a.example/"}, "website"),
]


@pytest.mark.parametrize(("body", "field"), ACCOUNT_INVALID)
async def test_invalid_account_is_400_naming_the_field(
    app_client: Client, body: dict[str, Any], field: str
) -> None:
    """An invalid account body answers 400 validation_error with a detail on the bad field,
    for POST and PUT, and records nothing."""
    account = await create_account(app_client)
    for method, path in (("POST", "/api/accounts/"), ("PUT", f"/api/accounts/{account['id']}/")):
        async with log_unchanged(app_client):
            response = await app_client.request(method, path, json=body, headers=ADMIN)
            error = await expect_error(response, 400, "validation_error")
        assert error["details"]
        assert field in detail_fields(error), error


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"account_name": ""}, "account_name"),
        ({"website": "javascript:alert(1)"}, "website"),
    ],
)
async def test_invalid_account_patch_is_400_naming_the_field(
    app_client: Client, body: dict[str, Any], field: str
) -> None:
    """An invalid PATCH answers 400 validation_error naming the field and records nothing."""
    account = await create_account(app_client)
    async with log_unchanged(app_client):
        response = await app_client.patch(
            f"/api/accounts/{account['id']}/", json=body, headers=ADMIN
        )
        error = await expect_error(response, 400, "validation_error")
    assert field in detail_fields(error), error


DESTINATION_INVALID = [
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "//example.com/x"}, "url"),
    ({"url": None}, "url"),
    ({"http_method": "DELETE"}, "http_method"),
    ({"http_method": "PATCH"}, "http_method"),
    ({"http_method": 1}, "http_method"),
    ({"headers": ["X-A", "1"]}, "headers"),
    ({"headers": "X-A: 1"}, "headers"),
    ({"headers": {"X-A": "one\ntwo"}}, "headers"),
    ({"headers": {"X-A": "one\r\nX-Injected: 1"}}, "headers"),
    ({"headers": {"Bad Name": "1"}}, "headers"),
    ({"headers": {"webhook-id": "forged"}}, "headers"),
    ({"headers": {"Host": "evil.example"}}, "headers"),
    ({"headers": {"X-A": 1}}, "headers"),
    ({"account": 999}, "account"),
    ({"account": "abc"}, "account"),
    ({"account": 0}, "account"),
    ({"account": True}, "account"),
]


@pytest.mark.parametrize(("change", "field"), DESTINATION_INVALID)
async def test_invalid_destination_is_400_naming_the_field(
    app_client: Client, change: dict[str, Any], field: str
) -> None:
    """An invalid destination body (bad url scheme, a method other than GET/POST/PUT, headers
    not an object of safe strings, an unknown account) answers 400 validation_error naming the
    field, for POST, PUT and PATCH, and records nothing."""
    account, destination = await _world(app_client)
    body = {**_bodies(account["id"])["destination"], **change}
    for method, path in (
        ("POST", "/api/destinations/"),
        ("PUT", f"/api/destinations/{destination['id']}/"),
        ("PATCH", f"/api/destinations/{destination['id']}/"),
    ):
        sent = change if method == "PATCH" else body
        async with log_unchanged(app_client):
            response = await app_client.request(method, path, json=sent, headers=ADMIN)
            error = await expect_error(response, 400, "validation_error")
        assert error["details"], (method, error)
        assert any(f.split(".")[0] == field for f in detail_fields(error)), (method, error)


async def test_destination_of_deleted_account_is_400(app_client: Client) -> None:
    """A destination naming a deleted account is refused like an unknown one."""
    account = await create_account(app_client)
    await app_client.delete(f"/api/accounts/{account['id']}/", headers=ADMIN)
    async with log_unchanged(app_client):
        response = await app_client.post(
            "/api/destinations/",
            json={"account": account["id"], "url": HOOK, "http_method": "POST"},
            headers=ADMIN,
        )
        error = await expect_error(response, 400, "validation_error")
    assert detail_fields(error) == ["account"]


UNKNOWN = [
    ("GET", "/api/accounts/999/", None),
    ("PUT", "/api/accounts/999/", "account"),
    ("PATCH", "/api/accounts/999/", "account"),
    ("DELETE", "/api/accounts/999/", None),
    ("POST", "/api/accounts/999/rotate-token/", None),
    ("GET", "/api/accounts/999/destinations/", None),
    ("GET", "/api/destinations/999/", None),
    ("PUT", "/api/destinations/999/", "destination"),
    ("PATCH", "/api/destinations/999/", "destination"),
    ("DELETE", "/api/destinations/999/", None),
    ("POST", "/api/destinations/999/enable/", None),
    ("POST", "/api/destinations/999/disable/", None),
]


@pytest.mark.parametrize(("method", "path", "kind"), UNKNOWN)
async def test_unknown_id_in_path_is_404(
    app_client: Client, method: str, path: str, kind: str | None
) -> None:
    """An unknown id in the path answers 404 not_found and records nothing."""
    account, _ = await _world(app_client)
    body = _bodies(account["id"])[kind] if kind else None
    async with log_unchanged(app_client):
        response = await app_client.request(method, path, json=body, headers=ADMIN)
        await expect_error(response, 404, "not_found")


async def test_deleted_ids_are_404(app_client: Client) -> None:
    """A deleted account or destination answers 404 to every path that names it."""
    account, destination = await _world(app_client)
    await app_client.delete(f"/api/accounts/{account['id']}/", headers=ADMIN)
    bodies = _bodies(account["id"])
    async with log_unchanged(app_client):
        for method, path, kind in UNKNOWN:
            target = path.replace("/accounts/999/", f"/accounts/{account['id']}/").replace(
                "/destinations/999/", f"/destinations/{destination['id']}/"
            )
            response = await app_client.request(
                method, target, json=bodies[kind] if kind else None, headers=ADMIN
            )
            await expect_error(response, 404, "not_found")


async def test_duplicate_email_is_409(app_client: Client) -> None:
    """Creating an account with a live account's email answers 409 and records nothing."""
    await create_account(app_client, email="dup@example.com")
    async with log_unchanged(app_client):
        response = await app_client.post(
            "/api/accounts/", json={"email": "dup@example.com", "account_name": "B"}, headers=ADMIN
        )
        await expect_error(response, 409, "duplicate_email")


@pytest.mark.parametrize(
    ("first", "second"),
    [("A@Example.com", "a@example.com"), ("a@example.com", "A@EXAMPLE.COM")],
)
async def test_duplicate_email_ignores_case(app_client: Client, first: str, second: str) -> None:
    """Emails that differ only in case are the same email: the second create answers 409."""
    await create_account(app_client, email=first)
    async with log_unchanged(app_client):
        response = await app_client.post(
            "/api/accounts/", json={"email": second, "account_name": "B"}, headers=ADMIN
        )
        await expect_error(response, 409, "duplicate_email")


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("taken", ["taken@example.com", "TAKEN@example.com"])
async def test_changing_email_to_another_accounts_is_409(
    app_client: Client, method: str, taken: str
) -> None:
    """PUT or PATCH changing an email to another live account's (in any case) answers 409 and
    records nothing."""
    await create_account(app_client, email="taken@example.com")
    mine = await create_account(app_client, email="mine@example.com")
    async with log_unchanged(app_client):
        response = await app_client.request(
            method,
            f"/api/accounts/{mine['id']}/",
            json={"email": taken, "account_name": "Mine"},
            headers=ADMIN,
        )
        await expect_error(response, 409, "duplicate_email")
    shown = await expect(await app_client.get(f"/api/accounts/{mine['id']}/", headers=ADMIN), 200)
    assert shown["email"] == "mine@example.com"


async def test_changing_the_case_of_ones_own_email_is_allowed(app_client: Client) -> None:
    """An account may change the case of its own email: it collides with no other account."""
    mine = await create_account(app_client, email="me@example.com")
    response = await app_client.patch(
        f"/api/accounts/{mine['id']}/", json={"email": "Me@example.com"}, headers=ADMIN
    )
    assert (await expect(response, 200))["email"] == "Me@example.com"


async def _big_body(size: int) -> bytes:
    raw = b'{"k": "' + b"x" * (size - 10) + b'"}'
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize(("method", "path"), WITH_BODY)
async def test_body_over_the_limit_is_413(make_client: MakeClient, method: str, path: str) -> None:
    """A body over --max-body-bytes answers 413 payload_too_large and records nothing."""
    client = await make_client(max_body_bytes=2048)
    account, destination = await _world(client)
    url = path.format(a=account["id"], d=destination["id"])
    raw = await _big_body(4096)
    assert len(raw) == 4096
    async with log_unchanged(client):
        response = await client.request(
            method,
            url,
            data=raw,
            headers={**_headers_for(path, account), "Content-Type": "application/json"},
        )
        await expect_error(response, 413, "payload_too_large")


async def test_body_at_the_limit_is_accepted(make_client: MakeClient) -> None:
    """A body of exactly --max-body-bytes is accepted; one byte more is 413."""
    client = await make_client(max_body_bytes=2048)
    account = await create_account(client)
    headers = {TOKEN_HEADER: account["app_secret_token"], "Content-Type": "application/json"}
    at_limit = await _big_body(2048)
    response = await client.post("/api/data/", data=at_limit, headers=headers)
    assert (await expect(response, 202))["status"] == "accepted"
    async with log_unchanged(client):
        response = await client.post("/api/data/", data=at_limit + b" ", headers=headers)
        await expect_error(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/",
        "/api/nope/",
        "/api/accounts/abc/",
        "/api/accounts/1/bogus/",
        "/api/accounts//",
        "/api/destinations/-1/",
    ],
)
@pytest.mark.parametrize("auth", [True, False])
async def test_unknown_path_is_404(app_client: Client, path: str, auth: bool) -> None:
    """An unknown path answers 404 not_found in the error shape, with or without a token."""
    async with log_unchanged(app_client):
        response = await app_client.get(path, headers=ADMIN if auth else {})
        await expect_error(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/accounts/"),
        ("PUT", "/api/accounts"),
        ("POST", "/api/accounts/1/"),
        ("GET", "/api/accounts/1/rotate-token/"),
        ("POST", "/api/accounts/1/destinations/"),
        ("PATCH", "/api/destinations/"),
        ("GET", "/api/destinations/1/enable/"),
        ("GET", "/api/data/"),
        ("PUT", "/api/data"),
    ],
)
async def test_wrong_method_is_405(app_client: Client, method: str, path: str) -> None:
    """A known path with a method it does not serve answers 405 method_not_allowed."""
    await _world(app_client)
    async with log_unchanged(app_client):
        response = await app_client.request(method, path, headers=ADMIN)
        await expect_error(response, 405, "method_not_allowed")


async def test_wrong_method_names_the_allowed_ones(app_client: Client) -> None:
    """A 405 carries the Allow header listing the methods the path serves (RFC 9110 15.5.6)."""
    response = await app_client.request("DELETE", "/api/accounts/", headers=ADMIN)
    await expect_error(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}
