"""Small helpers for the functional tests: admin calls, the error shape, reading the log."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from api.http import STORE
from eventstore.records import Recorded
from eventstore.sqlite import SQLiteEventStore

Client = TestClient[web.Request, web.Application]

ADMIN_TOKEN: Final = "test-admin"
ADMIN: Final = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOKEN_HEADER: Final = "CL-X-TOKEN"
WAIT: Final = 5.0
"""Seconds a helper waits for the log to reach an expected state."""
OUTCOMES: Final = frozenset({"DeliverySucceeded", "DeliveryAttemptFailed", "DeliveryFailed"})

_emails = itertools.count(1)


def new_email() -> str:
    """An email no other account in the run has."""
    return f"user{next(_emails)}@example.com"


def store_of(client: Client) -> SQLiteEventStore:
    return client.app[STORE]


async def log_of(client: Client) -> list[Recorded]:
    """Every event in the app's log, in order."""
    return await store_of(client).read_all(limit=1_000_000)


async def json_of(response: ClientResponse) -> Any:
    return json.loads(await response.read())


async def expect(response: ClientResponse, status: int) -> Any:
    """The response's JSON body, after checking its status (with the body in the message)."""
    body = await response.read()
    assert response.status == status, (response.status, body)
    return json.loads(body) if body else None


async def expect_error(
    response: ClientResponse, status: int, code: str | None = None
) -> dict[str, Any]:
    """Check the one error shape ``{"error": str, "code": str, "details": list}``."""
    body = await expect(response, status)
    assert isinstance(body, dict), body
    assert set(body) == {"error", "code", "details"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["code"], str)
    assert isinstance(body["details"], list)
    assert response.content_type == "application/json"
    if code is not None:
        assert body["code"] == code, body
    return body


def detail_fields(error: Mapping[str, Any]) -> list[str]:
    """The ``field`` named by each detail of an error body."""
    return [str(detail.get("field")) for detail in error["details"]]


async def create_account(
    client: Client,
    *,
    email: str | None = None,
    account_name: str = "Acme",
    website: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create an account and return the 201 body (with its ``app_secret_token``)."""
    body: dict[str, Any] = {"email": email or new_email(), "account_name": account_name}
    if website is not None:
        body["website"] = website
    response = await client.post("/api/accounts/", json=body, headers={**ADMIN, **(headers or {})})
    created: dict[str, Any] = await expect(response, 201)
    return created


async def create_destination(
    client: Client,
    account: int,
    url: str,
    *,
    http_method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create a destination and return the 201 body."""
    body = {
        "account": account,
        "url": url,
        "http_method": http_method,
        "headers": dict(headers or {}),
    }
    response = await client.post("/api/destinations/", json=body, headers=ADMIN)
    created: dict[str, Any] = await expect(response, 201)
    return created


async def send_data(client: Client, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST a payload with the account's token and return the 202 body."""
    response = await client.post("/api/data/", json=body, headers={TOKEN_HEADER: token})
    accepted: dict[str, Any] = await expect(response, 202)
    return accepted


async def wait_for_log(
    client: Client,
    predicate: Callable[[Sequence[Recorded]], bool],
) -> list[Recorded]:
    """Wait until the whole log satisfies ``predicate``; returns the log then.

    Woken by each commit, never by polling on a timer; gives up after ``WAIT`` seconds with a
    ``TimeoutError`` that lists the event types the log holds.
    """
    store = store_of(client)
    try:
        async with asyncio.timeout(WAIT):
            while True:
                records = await store.read_all(limit=1_000_000)
                if predicate(records):
                    return records
                await store.wait_beyond(records[-1].position if records else 0)
    except TimeoutError:
        types = [r.type for r in await store.read_all(limit=1_000_000)]
        raise TimeoutError(f"the log did not reach the expected state: {types}") from None


async def wait_for_outcomes(client: Client, payload_id: str, count: int) -> list[Recorded]:
    """Wait until ``count`` delivery outcomes of the payload are logged; returns them."""

    def outcomes(records: Sequence[Recorded]) -> list[Recorded]:
        return [r for r in records if r.type in OUTCOMES and r.data.get("payload_id") == payload_id]

    records = await wait_for_log(client, lambda rs: len(outcomes(rs)) >= count)
    return outcomes(records)


def of_type(records: Sequence[Recorded], *types: str) -> list[Recorded]:
    return [r for r in records if r.type in types]


@asynccontextmanager
async def log_unchanged(client: Client) -> AsyncIterator[None]:
    """Assert that whatever runs inside appends nothing to the log."""
    store = store_of(client)
    head = store.head
    before = len(await log_of(client))
    yield
    assert store.head == head
    assert len(await log_of(client)) == before


# -- deliveries, replay and audit ----------------------------------------------------------


async def account_with_destination(
    client: Client,
    url: str,
    *,
    http_method: str = "POST",
    headers: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new account and one destination of it at ``url``; returns both 201 bodies."""
    account = await create_account(client)
    destination = await create_destination(
        client, account["id"], url, http_method=http_method, headers=headers
    )
    return account, destination


async def payload_view(client: Client, payload_id: str) -> dict[str, Any]:
    """``GET /api/payloads/{id}/`` as the admin; returns the 200 body."""
    view: dict[str, Any] = await expect(
        await client.get(f"/api/payloads/{payload_id}/", headers=ADMIN), 200
    )
    return view


def delivery_in(view: Mapping[str, Any], destination_id: int) -> dict[str, Any]:
    """The delivery to ``destination_id`` in a payload view (exactly one must exist)."""
    [found] = [d for d in view["deliveries"] if d["destination_id"] == destination_id]
    return dict(found)


async def replay_payload(
    client: Client, payload_id: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``POST /api/payloads/{id}/replay/`` as the admin; returns the 202 body."""
    response = await client.post(
        f"/api/payloads/{payload_id}/replay/",
        json=None if body is None else dict(body),
        headers=ADMIN,
    )
    answer: dict[str, Any] = await expect(response, 202)
    return answer


def steps(records: Sequence[Recorded]) -> list[tuple[str, int]]:
    """Each delivery outcome as ``(type, attempt)``, in log order."""
    return [(r.type, int(r.data["attempt"])) for r in records if r.type in OUTCOMES]
