"""The attempt log, the deliveries list, replay, and enabling or disabling a destination."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.functional.conftest import MakeClient
from tests.functional.helpers import (
    ADMIN,
    Client,
    account_with_destination,
    create_destination,
    delivery_in,
    detail_fields,
    expect,
    expect_error,
    log_of,
    log_unchanged,
    of_type,
    payload_view,
    replay_payload,
    send_data,
    steps,
    wait_for_outcomes,
)
from tests.sink import Answer, Sink

UNKNOWN_PAYLOAD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
PAYLOAD_KEYS = {"payload_id", "account", "received_at", "body", "deliveries"}
DELIVERY_KEYS = {
    "payload_id",
    "destination_id",
    "account",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "received_at",
    "updated_at",
    "attempt_log",
}
ATTEMPT_KEYS = {
    "attempt",
    "outcome",
    "status_code",
    "error",
    "duration_ms",
    "response_excerpt",
    "trigger",
    "next_attempt_at",
    "recorded_at",
}


async def deliveries(client: Client, **query: str | int) -> dict[str, Any]:
    """``GET /api/deliveries/`` with ``query`` as the admin; returns the 200 body."""
    params = {key: str(value) for key, value in query.items()}
    body: dict[str, Any] = await expect(
        await client.get("/api/deliveries/", params=params, headers=ADMIN), 200
    )
    return body


def keys_of(items: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(item["payload_id"], item["destination_id"]) for item in items]


async def bulk_replay(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/deliveries/replay/`` as the admin; returns the 202 body."""
    answer: dict[str, Any] = await expect(
        await client.post("/api/deliveries/replay/", json=body, headers=ADMIN), 202
    )
    return answer


async def set_enabled(client: Client, destination_id: int, *, enabled: bool) -> dict[str, Any]:
    """Enable or disable a destination as the admin; returns the 200 body."""
    verb = "enable" if enabled else "disable"
    body: dict[str, Any] = await expect(
        await client.post(f"/api/destinations/{destination_id}/{verb}/", headers=ADMIN), 200
    )
    return body


async def failed_payload(client: Client, sink: Sink, path: str) -> tuple[int, str]:
    """A new account whose one destination, ``path`` on the sink (answering 500), failed a
    payload for good; returns the destination id and the payload id. Needs a client with an
    empty retry schedule."""
    sink.answer(path, 500)
    account, destination = await account_with_destination(client, sink.url(path))
    accepted = await send_data(client, account["app_secret_token"], {"path": path})
    [failed] = await wait_for_outcomes(client, accepted["payload_id"], 1)
    assert failed.type == "DeliveryFailed"
    return destination["id"], accepted["payload_id"]


# -- GET /api/payloads/{id}/ -------------------------------------------------------------


async def test_payload_shows_its_body_and_every_attempt(
    make_client: MakeClient, sink: Sink
) -> None:
    """GET /api/payloads/{id}/ answers the payload, its body, and per destination its status
    and an attempt log entry (outcome, status, error, duration, excerpt, trigger, times) for
    every attempt."""
    client = await make_client(retry_schedule=(0.05,))
    sink.script("/hook", Answer(500, body=b"oops"), Answer(200, body=b"thanks"))
    account, destination = await account_with_destination(client, sink.url("/hook"))
    accepted = await send_data(client, account["app_secret_token"], {"order": 7})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 2)
    [received] = of_type(await log_of(client), "PayloadReceived")

    view = await payload_view(client, accepted["payload_id"])
    assert set(view) == PAYLOAD_KEYS
    assert view["payload_id"] == accepted["payload_id"]
    assert view["account"] == account["id"]
    assert view["received_at"] == received.recorded_at
    assert view["body"] == {"order": 7}
    [delivery] = view["deliveries"]
    assert set(delivery) == DELIVERY_KEYS
    assert delivery["destination_id"] == destination["id"]
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    failed, succeeded = delivery["attempt_log"]
    for entry in (failed, succeeded):
        assert set(entry) == ATTEMPT_KEYS
        assert isinstance(entry["duration_ms"], int | float)
        assert entry["trigger"] == "scheduled"
    assert failed["attempt"] == 1
    assert failed["outcome"] == "DeliveryAttemptFailed"
    assert (failed["status_code"], failed["error"]) == (500, "http")
    assert failed["response_excerpt"] == "oops"
    assert failed["next_attempt_at"] == outcomes[0].data["next_attempt_at"]
    assert failed["recorded_at"] == outcomes[0].recorded_at
    assert succeeded["attempt"] == 2
    assert succeeded["outcome"] == "DeliverySucceeded"
    assert (succeeded["status_code"], succeeded["error"]) == (200, None)
    assert succeeded["response_excerpt"] == "thanks"
    assert succeeded["next_attempt_at"] is None
    assert succeeded["recorded_at"] == outcomes[1].recorded_at


async def test_unknown_payload_is_404(app_client: Client) -> None:
    """An unknown payload id answers 404 in the error shape, for reading and for replay."""
    await expect_error(
        await app_client.get(f"/api/payloads/{UNKNOWN_PAYLOAD}/", headers=ADMIN), 404, "not_found"
    )
    async with log_unchanged(app_client):
        await expect_error(
            await app_client.post(f"/api/payloads/{UNKNOWN_PAYLOAD}/replay/", headers=ADMIN),
            404,
            "not_found",
        )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/payloads/{UNKNOWN_PAYLOAD}/"),
        ("GET", "/api/deliveries/"),
        ("POST", f"/api/payloads/{UNKNOWN_PAYLOAD}/replay/"),
        ("POST", "/api/deliveries/replay/"),
        ("POST", "/api/destinations/1/enable/"),
        ("POST", "/api/destinations/1/disable/"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_delivery_endpoints_need_the_admin_token(
    app_client: Client, method: str, path: str, headers: dict[str, str]
) -> None:
    """Reading deliveries, replaying and enabling/disabling answer 401 without the admin
    token or with a wrong one, and record nothing."""
    async with log_unchanged(app_client):
        response = await app_client.request(method, path, headers=headers)
        await expect_error(response, 401, "unauthorized")


# -- GET /api/deliveries/ ----------------------------------------------------------------


async def test_deliveries_filter_by_status_account_destination_and_time(
    make_client: MakeClient, sink: Sink
) -> None:
    """The deliveries list narrows by status, account, destination, and receipt time (since
    and until, inclusive, in ISO 8601), each filter on its own and combined."""
    client = await make_client(retry_schedule=())
    sink.answer("/bad", 500)
    account_a, good = await account_with_destination(client, sink.url("/good"))
    bad = await create_destination(client, account_a["id"], sink.url("/bad"))
    account_b, other = await account_with_destination(client, sink.url("/other"))
    token_a, token_b = account_a["app_secret_token"], account_b["app_secret_token"]
    p1 = (await send_data(client, token_a, {"n": 1}))["payload_id"]
    p2 = (await send_data(client, token_b, {"n": 2}))["payload_id"]
    p3 = (await send_data(client, token_a, {"n": 3}))["payload_id"]
    for payload_id, count in ((p1, 2), (p2, 1), (p3, 2)):
        await wait_for_outcomes(client, payload_id, count)
    received = {
        r.data["payload_id"]: r.recorded_at
        for r in of_type(await log_of(client), "PayloadReceived")
    }

    everything = await deliveries(client)
    assert everything["next_after"] is None
    assert keys_of(everything["items"]) == sorted(
        [(p1, good["id"]), (p1, bad["id"]), (p2, other["id"]), (p3, good["id"]), (p3, bad["id"])]
    )
    failed = await deliveries(client, status="failed")
    assert keys_of(failed["items"]) == [(p1, bad["id"]), (p3, bad["id"])]
    assert {item["status"] for item in failed["items"]} == {"failed"}
    delivered = await deliveries(client, status="delivered")
    assert keys_of(delivered["items"]) == [(p1, good["id"]), (p2, other["id"]), (p3, good["id"])]
    assert (await deliveries(client, status="retrying"))["items"] == []
    by_account = await deliveries(client, account=account_b["id"])
    assert keys_of(by_account["items"]) == [(p2, other["id"])]
    by_destination = await deliveries(client, destination=good["id"])
    assert keys_of(by_destination["items"]) == [(p1, good["id"]), (p3, good["id"])]
    since = await deliveries(client, since=received[p2])
    assert {item["payload_id"] for item in since["items"]} == {p2, p3}
    until = await deliveries(client, until=received[p2])
    assert {item["payload_id"] for item in until["items"]} == {p1, p2}
    elsewhere = datetime.fromisoformat(received[p2]).astimezone(timezone(timedelta(hours=2)))
    assert elsewhere.utcoffset() == timedelta(hours=2)
    shifted = await deliveries(client, since=elsewhere.isoformat())
    assert shifted["items"] == since["items"]
    window = await deliveries(client, since=received[p2], until=received[p2])
    assert keys_of(window["items"]) == [(p2, other["id"])]
    combined = await deliveries(
        client, status="failed", account=account_a["id"], since=received[p3]
    )
    assert keys_of(combined["items"]) == [(p3, bad["id"])]


async def test_deliveries_pages_walk_every_delivery_once(
    make_client: MakeClient, sink: Sink
) -> None:
    """With limit=1 each page holds one delivery and next_after leads to the next, until a
    last page whose next_after is null; together the pages are the whole list."""
    client = await make_client(retry_schedule=())
    account, _ = await account_with_destination(client, sink.url("/a"))
    await create_destination(client, account["id"], sink.url("/b"))
    for n in range(3):
        accepted = await send_data(client, account["app_secret_token"], {"n": n})
        await wait_for_outcomes(client, accepted["payload_id"], 2)
    whole = (await deliveries(client))["items"]
    assert len(whole) == 6

    walked: list[dict[str, Any]] = []
    query: dict[str, str | int] = {"limit": 1}
    while True:
        page = await deliveries(client, **query)
        assert len(page["items"]) == 1
        walked.extend(page["items"])
        if page["next_after"] is None:
            break
        query = {"limit": 1, "after": page["next_after"]}
    assert walked == whole


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01"}, "until"),
        ({"after": "not-a-cursor"}, "after"),
        ({"account": "x"}, "account"),
        ({"destination": "-1"}, "destination"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
async def test_deliveries_bad_query_is_400(
    app_client: Client, query: dict[str, str], field: str
) -> None:
    """A bad filter, cursor or limit on the deliveries list answers 400 in the error shape,
    naming the parameter in its details."""
    response = await app_client.get("/api/deliveries/", params=query, headers=ADMIN)
    error = await expect_error(response, 400)
    assert detail_fields(error) == [field]


@pytest.mark.parametrize(
    "body",
    [{"status": "lost"}, {"since": "yesterday"}, {"after": "not-a-cursor"}, {"limit": 0}],
)
async def test_bulk_replay_bad_body_is_400(app_client: Client, body: dict[str, Any]) -> None:
    """A bad filter, cursor or limit in a bulk replay answers 400 and records nothing."""
    async with log_unchanged(app_client):
        response = await app_client.post("/api/deliveries/replay/", json=body, headers=ADMIN)
        await expect_error(response, 400)


# -- POST /api/payloads/{id}/replay/ -----------------------------------------------------


async def test_replay_after_final_failure_delivers_again(
    make_client: MakeClient, sink: Sink
) -> None:
    """Replaying a failed delivery answers 202 {"replayed": 1, "skipped": []}, logs a
    DeliveryReplayRequested by the admin, and sends the same webhook-id again as the next
    attempt number with trigger "manual", after which the delivery reads "delivered"."""
    client = await make_client(retry_schedule=(0.05,))
    sink.answer("/hook", 500)
    account, destination = await account_with_destination(client, sink.url("/hook"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    payload_id = accepted["payload_id"]
    before = await wait_for_outcomes(client, payload_id, 2)
    assert steps(before) == [("DeliveryAttemptFailed", 1), ("DeliveryFailed", 2)]

    sink.answer("/hook", 200)
    answer = await replay_payload(client, payload_id)
    assert answer == {"replayed": 1, "skipped": []}
    [requested] = of_type(await log_of(client), "DeliveryReplayRequested")
    assert requested.stream == f"payload-{payload_id}"
    assert requested.data["destination_ids"] == [destination["id"]]
    assert requested.metadata["actor"] == "admin"

    outcomes = await wait_for_outcomes(client, payload_id, 3)
    assert steps(outcomes)[2] == ("DeliverySucceeded", 3)
    assert outcomes[2].data["trigger"] == "manual"
    assert outcomes[2].position > requested.position
    assert sink.count(payload_id) == 3
    delivery = delivery_in(await payload_view(client, payload_id), destination["id"])
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert [e["trigger"] for e in delivery["attempt_log"]] == ["scheduled", "scheduled", "manual"]


async def test_replay_restarts_the_retry_schedule(make_client: MakeClient, sink: Sink) -> None:
    """After a replay a still-failing delivery gets the whole schedule again: the manual
    attempt and then one retry per schedule step, numbered on from the earlier attempts."""
    client = await make_client(retry_schedule=(0.05, 0.05))
    sink.answer("/hook", 500)
    account, _ = await account_with_destination(client, sink.url("/hook"))
    payload_id = (await send_data(client, account["app_secret_token"], {"n": 1}))["payload_id"]
    await wait_for_outcomes(client, payload_id, 3)

    await replay_payload(client, payload_id)
    outcomes = await wait_for_outcomes(client, payload_id, 6)
    assert steps(outcomes) == [
        ("DeliveryAttemptFailed", 1),
        ("DeliveryAttemptFailed", 2),
        ("DeliveryFailed", 3),
        ("DeliveryAttemptFailed", 4),
        ("DeliveryAttemptFailed", 5),
        ("DeliveryFailed", 6),
    ]
    assert [o.data["trigger"] for o in outcomes[3:]] == ["manual", "scheduled", "scheduled"]
    assert sink.count(payload_id) == 6


async def test_replay_of_one_destination(make_client: MakeClient, sink: Sink) -> None:
    """A replay naming a destination replays only that one; naming a destination the payload
    was not sent to answers 404 and records nothing."""
    client = await make_client(retry_schedule=())
    sink.answer("/one", 500)
    sink.answer("/two", 500)
    account, one = await account_with_destination(client, sink.url("/one"))
    two = await create_destination(client, account["id"], sink.url("/two"))
    payload_id = (await send_data(client, account["app_secret_token"], {"n": 1}))["payload_id"]
    await wait_for_outcomes(client, payload_id, 2)
    later = await create_destination(client, account["id"], sink.url("/later"))

    async with log_unchanged(client):
        response = await client.post(
            f"/api/payloads/{payload_id}/replay/", json={"destination": later["id"]}, headers=ADMIN
        )
        await expect_error(response, 404, "not_found")

    sink.answer("/two", 200)
    answer = await replay_payload(client, payload_id, {"destination": two["id"]})
    assert answer == {"replayed": 1, "skipped": []}
    [requested] = of_type(await log_of(client), "DeliveryReplayRequested")
    assert requested.data["destination_ids"] == [two["id"]]
    outcomes = await wait_for_outcomes(client, payload_id, 3)
    assert outcomes[2].type == "DeliverySucceeded"
    assert outcomes[2].data["destination_id"] == two["id"]
    assert len(sink.received("/one")) == 1
    assert len(sink.received("/two")) == 2
    view = await payload_view(client, payload_id)
    assert delivery_in(view, one["id"])["status"] == "failed"
    assert delivery_in(view, two["id"])["status"] == "delivered"


async def test_replay_skips_disabled_and_deleted_destinations(
    make_client: MakeClient, sink: Sink
) -> None:
    """A replay leaves out a disabled and a deleted destination, naming each with its reason,
    records nothing and sends nothing."""
    client = await make_client(retry_schedule=())
    sink.answer("/off", 500)
    sink.answer("/gone", 500)
    account, disabled = await account_with_destination(client, sink.url("/off"))
    deleted = await create_destination(client, account["id"], sink.url("/gone"))
    payload_id = (await send_data(client, account["app_secret_token"], {"n": 1}))["payload_id"]
    await wait_for_outcomes(client, payload_id, 2)
    await set_enabled(client, disabled["id"], enabled=False)
    await expect(await client.delete(f"/api/destinations/{deleted['id']}/", headers=ADMIN), 204)
    sink.answer("/off", 200)
    sink.answer("/gone", 200)

    async with log_unchanged(client):
        answer = await replay_payload(client, payload_id)
    assert answer["replayed"] == 0
    reasons = {s["destination_id"]: s["reason"] for s in answer["skipped"]}
    assert reasons == {
        disabled["id"]: "destination_disabled",
        deleted["id"]: "destination_deleted",
    }
    assert len(sink.requests) == 2


async def test_replay_goes_to_the_destination_as_it_is_now(
    make_client: MakeClient, sink: Sink
) -> None:
    """A replay is sent to the destination's current URL, method and headers, not to those
    it had when the payload arrived."""
    client = await make_client(retry_schedule=())
    destination_id, payload_id = await failed_payload(client, sink, "/old")
    patched = await expect(
        await client.patch(
            f"/api/destinations/{destination_id}/",
            json={"url": sink.url("/new"), "http_method": "PUT", "headers": {"X-Shard": "7"}},
            headers=ADMIN,
        ),
        200,
    )
    assert patched["url"] == sink.url("/new")

    assert (await replay_payload(client, payload_id))["replayed"] == 1
    [request] = await sink.wait_for(1, path="/new")
    assert request.method == "PUT"
    assert request.headers["X-Shard"] == "7"
    assert request.webhook_id == payload_id
    assert request.json() == {"path": "/old"}
    assert len(sink.received("/old")) == 1
    [_, replayed] = await wait_for_outcomes(client, payload_id, 2)
    assert replayed.type == "DeliverySucceeded"


# -- POST /api/deliveries/replay/ --------------------------------------------------------


async def test_bulk_replay_of_failed_deliveries(make_client: MakeClient, sink: Sink) -> None:
    """Replaying {"status": "failed"} replays every failed delivery across payloads and
    accounts, and only those: a delivered one is not sent again."""
    client = await make_client(retry_schedule=())
    first_dest, first = await failed_payload(client, sink, "/first")
    second_dest, second = await failed_payload(client, sink, "/second")
    account, _ = await account_with_destination(client, sink.url("/fine"))
    fine = (await send_data(client, account["app_secret_token"], {"n": 1}))["payload_id"]
    await wait_for_outcomes(client, fine, 1)
    sink.answer("/first", 200)
    sink.answer("/second", 200)

    answer = await bulk_replay(client, {"status": "failed"})
    assert answer == {"replayed": 2, "skipped": []}
    requested = of_type(await log_of(client), "DeliveryReplayRequested")
    assert {(r.data["payload_id"], tuple(r.data["destination_ids"])) for r in requested} == {
        (first, (first_dest,)),
        (second, (second_dest,)),
    }
    for payload_id in (first, second):
        outcomes = await wait_for_outcomes(client, payload_id, 2)
        assert outcomes[1].type == "DeliverySucceeded"
        assert outcomes[1].data["trigger"] == "manual"
    assert (await deliveries(client, status="failed"))["items"] == []
    assert sink.count(fine) == 1
    assert len(await wait_for_outcomes(client, fine, 1)) == 1


async def test_bulk_replay_in_pages(make_client: MakeClient, sink: Sink) -> None:
    """A bulk replay with limit 1 replays one delivery per call and answers next_after, which
    walks the rest of the matches until it is null."""
    client = await make_client(retry_schedule=())
    failed = [(await failed_payload(client, sink, f"/p{n}"))[1] for n in range(3)]
    for n in range(3):
        sink.answer(f"/p{n}", 200)

    replayed: list[int] = []
    body: dict[str, Any] = {"status": "failed", "limit": 1}
    while True:
        answer = await bulk_replay(client, body)
        assert set(answer) == {"replayed", "skipped", "next_after"}
        replayed.append(answer["replayed"])
        if answer["next_after"] is None:
            break
        body = {"status": "failed", "limit": 1, "after": answer["next_after"]}
    assert replayed == [1, 1, 1]
    requested = of_type(await log_of(client), "DeliveryReplayRequested")
    assert sorted(r.data["payload_id"] for r in requested) == sorted(failed)
    for payload_id in failed:
        outcomes = await wait_for_outcomes(client, payload_id, 2)
        assert outcomes[1].type == "DeliverySucceeded"


# -- enable and disable ------------------------------------------------------------------


async def test_disabled_destination_misses_new_payloads_until_enabled(
    make_client: MakeClient, sink: Sink
) -> None:
    """While a destination is disabled new payloads leave it out; enabling it does not send
    what it missed, and payloads after that reach it again."""
    client = await make_client(retry_schedule=())
    account, destination = await account_with_destination(client, sink.url("/hook"))
    token = account["app_secret_token"]

    disabled = await set_enabled(client, destination["id"], enabled=False)
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "manual")
    missed = await send_data(client, token, {"n": 1})
    assert missed["destinations"] == 0
    [received] = of_type(await log_of(client), "PayloadReceived")
    assert received.data["destination_ids"] == []

    enabled = await set_enabled(client, destination["id"], enabled=True)
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    after = await send_data(client, token, {"n": 2})
    assert after["destinations"] == 1
    await wait_for_outcomes(client, after["payload_id"], 1)
    assert sink.by_webhook_id() == {after["payload_id"]: 1}
    log = await log_of(client)
    assert [r.type for r in log if r.type.startswith("Destination")] == [
        "DestinationCreated",
        "DestinationDisabled",
        "DestinationEnabled",
    ]


async def test_delivery_skipped_by_disabling_is_sent_by_replay_not_by_enabling(
    make_client: MakeClient, sink: Sink
) -> None:
    """A retrying delivery whose destination is disabled reads "skipped" and stays so when
    the destination is enabled again (no retry is due); a replay then delivers it."""
    client = await make_client(retry_schedule=(30.0,))
    sink.answer("/hook", 500)
    account, destination = await account_with_destination(client, sink.url("/hook"))
    payload_id = (await send_data(client, account["app_secret_token"], {"n": 1}))["payload_id"]
    [failed] = await wait_for_outcomes(client, payload_id, 1)
    assert failed.type == "DeliveryAttemptFailed"

    await set_enabled(client, destination["id"], enabled=False)
    skipped = delivery_in(await payload_view(client, payload_id), destination["id"])
    assert (skipped["status"], skipped["next_attempt_at"]) == ("skipped", None)
    await set_enabled(client, destination["id"], enabled=True)
    still = delivery_in(await payload_view(client, payload_id), destination["id"])
    assert (still["status"], still["next_attempt_at"]) == ("skipped", None)
    assert (await deliveries(client, status="skipped"))["items"][0]["payload_id"] == payload_id

    sink.answer("/hook", 200)
    assert await replay_payload(client, payload_id) == {"replayed": 1, "skipped": []}
    outcomes = await wait_for_outcomes(client, payload_id, 2)
    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliverySucceeded", 2)]
    assert outcomes[1].data["trigger"] == "manual"
    assert sink.count(payload_id) == 2
