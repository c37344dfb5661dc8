"""``POST /api/data/`` and delivery, end to end: the real app forwards to a real loopback sink."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.functional.helpers import (
    ADMIN,
    TOKEN_HEADER,
    Client,
    create_account,
    create_destination,
    expect,
    log_of,
    of_type,
    send_data,
    wait_for_log,
    wait_for_outcomes,
)
from tests.sink import Sink

PAYLOAD: dict[str, Any] = {
    "event": "order.created",
    "id": 17,
    "amount": 12.5,
    "paid": True,
    "note": None,
    "items": [{"sku": "A-1", "qty": 2}],
    "customer": {"name": "Zoë", "tags": ["vip"]},
}


async def test_accepts_a_payload_with_202(app_client: Client) -> None:
    """POST /api/data/ answers 202 with status accepted, the payload id and the fan-out count,
    and the log holds a PayloadReceived with the body, the destination ids and the account actor.
    """
    account = await create_account(app_client)
    destinations = [
        await create_destination(app_client, account["id"], "http://127.0.0.1:9/a"),
        await create_destination(app_client, account["id"], "http://127.0.0.1:9/b"),
    ]
    response = await app_client.post(
        "/api/data/", json=PAYLOAD, headers={TOKEN_HEADER: account["app_secret_token"]}
    )
    body = await expect(response, 202)
    assert set(body) == {"status", "payload_id", "destinations"}
    assert body["status"] == "accepted"
    assert isinstance(body["payload_id"], str)
    assert body["payload_id"]
    assert body["destinations"] == 2
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.stream == f"payload-{body['payload_id']}"
    assert received.data["payload_id"] == body["payload_id"]
    assert received.data["account_id"] == account["id"]
    assert received.data["body"] == PAYLOAD
    assert received.data["destination_ids"] == [d["id"] for d in destinations]
    assert received.metadata["actor"] == f"account:{account['id']}"


async def test_accepts_a_payload_without_destinations(app_client: Client) -> None:
    """An account with no destinations still gets 202, with destinations 0."""
    account = await create_account(app_client)
    body = await send_data(app_client, account["app_secret_token"], {"a": 1})
    assert body["destinations"] == 0
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.data["destination_ids"] == []


async def test_data_path_without_trailing_slash(app_client: Client) -> None:
    """/api/data (no trailing slash) is served too."""
    account = await create_account(app_client)
    response = await app_client.post(
        "/api/data", json={"a": 1}, headers={TOKEN_HEADER: account["app_secret_token"]}
    )
    assert (await expect(response, 202))["status"] == "accepted"


async def test_payload_ids_are_distinct(app_client: Client) -> None:
    """Each accepted payload gets its own id."""
    account = await create_account(app_client)
    ids = {
        (await send_data(app_client, account["app_secret_token"], {"n": n}))["payload_id"]
        for n in range(5)
    }
    assert len(ids) == 5


async def test_post_destination_receives_the_json_body(app_client: Client, sink: Sink) -> None:
    """A POST destination receives the payload as a JSON body with Content-Type
    application/json, and the outcome is logged as DeliverySucceeded."""
    account = await create_account(app_client)
    destination = await create_destination(app_client, account["id"], sink.url("/post"))
    accepted = await send_data(app_client, account["app_secret_token"], PAYLOAD)
    [request] = await sink.wait_for(1)
    assert request.method == "POST"
    assert request.path == "/post"
    assert request.headers["Content-Type"].split(";")[0] == "application/json"
    assert request.json() == PAYLOAD
    [outcome] = await wait_for_outcomes(app_client, accepted["payload_id"], 1)
    assert outcome.type == "DeliverySucceeded"
    assert outcome.data["destination_id"] == destination["id"]


async def test_put_destination_receives_the_json_body(app_client: Client, sink: Sink) -> None:
    """A PUT destination receives the payload as a JSON body with Content-Type application/json."""
    account = await create_account(app_client)
    await create_destination(app_client, account["id"], sink.url("/put"), http_method="PUT")
    await send_data(app_client, account["app_secret_token"], PAYLOAD)
    [request] = await sink.wait_for(1)
    assert request.method == "PUT"
    assert request.headers["Content-Type"].split(";")[0] == "application/json"
    assert request.json() == PAYLOAD


async def test_get_destination_receives_top_level_keys_as_query(
    app_client: Client, sink: Sink
) -> None:
    """A GET destination receives each top-level key as a query parameter: strings as they are,
    other values JSON-encoded, and no body."""
    account = await create_account(app_client)
    await create_destination(app_client, account["id"], sink.url("/get"), http_method="GET")
    await send_data(app_client, account["app_secret_token"], PAYLOAD)
    [request] = await sink.wait_for(1)
    assert request.method == "GET"
    assert request.path == "/get"
    assert request.body == b""
    assert sorted(request.query) == sorted(PAYLOAD)
    assert request.query["event"] == "order.created"
    for key, value in PAYLOAD.items():
        if not isinstance(value, str):
            assert json.loads(request.query[key]) == value, key
    assert request.query["paid"] == "true"
    assert request.query["note"] == "null"


async def test_get_destination_keeps_its_own_query(app_client: Client, sink: Sink) -> None:
    """A GET destination's own query string is kept alongside the payload's keys."""
    account = await create_account(app_client)
    await create_destination(
        app_client, account["id"], sink.url("/get?source=dp"), http_method="GET"
    )
    await send_data(app_client, account["app_secret_token"], {"a": "b"})
    [request] = await sink.wait_for(1)
    assert request.query["source"] == "dp"
    assert request.query["a"] == "b"


async def test_destination_headers_and_webhook_headers_arrive(
    app_client: Client, sink: Sink
) -> None:
    """The destination's headers arrive as given, with webhook-id equal to the payload id and
    webhook-timestamp a recent Unix time."""
    account = await create_account(app_client)
    custom = {"X-Api-Key": "secret-1", "Authorization": "Bearer sink-token", "X-Empty": ""}
    await create_destination(app_client, account["id"], sink.url("/h"), headers=custom)
    before = time.time()
    accepted = await send_data(app_client, account["app_secret_token"], PAYLOAD)
    [request] = await sink.wait_for(1)
    for name, value in custom.items():
        assert request.headers[name] == value
    assert request.webhook_id == accepted["payload_id"]
    assert sink.count(accepted["payload_id"]) == 1
    stamp = int(request.headers["webhook-timestamp"])
    assert int(before) - 1 <= stamp <= request.received_at + 1


async def test_fan_out_reaches_every_destination(app_client: Client, sink: Sink) -> None:
    """A payload to an account with three destinations reaches all three, each once, and the
    log gets one DeliverySucceeded per destination, status 200, by the system actor."""
    account = await create_account(app_client)
    other = await create_account(app_client)
    destinations = [
        await create_destination(app_client, account["id"], sink.url(f"/d{n}")) for n in range(3)
    ]
    await create_destination(app_client, other["id"], sink.url("/other"))
    accepted = await send_data(app_client, account["app_secret_token"], PAYLOAD)
    assert accepted["destinations"] == 3
    requests = await sink.wait_for(3)
    assert sorted(r.path for r in requests) == ["/d0", "/d1", "/d2"]
    assert all(r.json() == PAYLOAD for r in requests)
    assert sink.by_webhook_id() == {accepted["payload_id"]: 3}

    outcomes = await wait_for_outcomes(app_client, accepted["payload_id"], 3)
    assert {r.type for r in outcomes} == {"DeliverySucceeded"}
    assert sorted(r.data["destination_id"] for r in outcomes) == [d["id"] for d in destinations]
    [payload] = of_type(await log_of(app_client), "PayloadReceived")
    for record in outcomes:
        assert record.stream == f"payload-{accepted['payload_id']}"
        assert record.data["payload_id"] == accepted["payload_id"]
        assert record.data["status_code"] == 200
        assert record.data["attempt"] == 1
        assert record.data["trigger"] == "scheduled"
        assert record.metadata["actor"] == "system"
        assert record.metadata["causation"] == payload.position
    assert sink.received("/other") == []


async def test_each_payload_is_delivered_once(app_client: Client, sink: Sink) -> None:
    """Several payloads to one destination each arrive exactly once, with their own webhook-id."""
    account = await create_account(app_client)
    await create_destination(app_client, account["id"], sink.url("/many"))
    ids = [
        (await send_data(app_client, account["app_secret_token"], {"n": n}))["payload_id"]
        for n in range(5)
    ]
    await sink.wait_for(5)
    for payload_id in ids:
        await wait_for_outcomes(app_client, payload_id, 1)
    assert sink.by_webhook_id() == dict.fromkeys(ids, 1)
    assert sorted(r.json()["n"] for r in sink.requests) == list(range(5))


async def test_server_error_is_recorded_as_a_failed_attempt(app_client: Client, sink: Sink) -> None:
    """A destination answering 500 gives a DeliveryAttemptFailed or DeliveryFailed with error
    http and status_code 500."""
    account = await create_account(app_client)
    destination = await create_destination(app_client, account["id"], sink.url("/broken"))
    sink.answer("/broken", 500, body=b"boom")
    accepted = await send_data(app_client, account["app_secret_token"], {"a": 1})
    await sink.wait_for(1)
    [outcome, *_] = await wait_for_outcomes(app_client, accepted["payload_id"], 1)
    assert outcome.type in {"DeliveryAttemptFailed", "DeliveryFailed"}
    assert outcome.data["destination_id"] == destination["id"]
    assert outcome.data["status_code"] == 500
    assert outcome.data["error"] == "http"
    assert outcome.data["attempt"] == 1
    assert outcome.data["response_excerpt"] == "boom"
    assert outcome.metadata["actor"] == "system"
    shown = await expect(
        await app_client.get(f"/api/destinations/{destination['id']}/", headers=ADMIN), 200
    )
    assert shown["enabled"] is True


async def test_gone_disables_the_destination(app_client: Client, sink: Sink) -> None:
    """A destination answering 410 gets DestinationDisabled with reason gone, in the same append
    as the DeliveryFailed, and shows enabled false."""
    account = await create_account(app_client)
    destination = await create_destination(app_client, account["id"], sink.url("/gone"))
    sink.answer("/gone", 410)
    accepted = await send_data(app_client, account["app_secret_token"], {"a": 1})
    await sink.wait_for(1)
    records = await wait_for_log(app_client, lambda rs: bool(of_type(rs, "DestinationDisabled")))
    [failed] = of_type(records, "DeliveryFailed")
    [disabled] = of_type(records, "DestinationDisabled")
    assert failed.data["payload_id"] == accepted["payload_id"]
    assert failed.data["status_code"] == 410
    assert disabled.stream == f"destination-{destination['id']}"
    assert disabled.data["reason"] == "gone"
    assert disabled.metadata["actor"] == "system"
    assert disabled.position == failed.position + 1
    assert disabled.recorded_at == failed.recorded_at
    shown = await expect(
        await app_client.get(f"/api/destinations/{destination['id']}/", headers=ADMIN), 200
    )
    assert shown["enabled"] is False
    assert shown["disabled_reason"] == "gone"

    again = await send_data(app_client, account["app_secret_token"], {"a": 2})
    assert again["destinations"] == 0


async def test_disabled_destination_is_left_out_of_fan_out(app_client: Client, sink: Sink) -> None:
    """A disabled destination is not in a new payload's fan-out and receives nothing; enabled
    again, it receives the next payload."""
    account = await create_account(app_client)
    on = await create_destination(app_client, account["id"], sink.url("/on"))
    off = await create_destination(app_client, account["id"], sink.url("/off"))
    await expect(
        await app_client.post(f"/api/destinations/{off['id']}/disable/", headers=ADMIN), 200
    )
    accepted = await send_data(app_client, account["app_secret_token"], {"a": 1})
    assert accepted["destinations"] == 1
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.data["destination_ids"] == [on["id"]]
    await sink.wait_for(1)
    [outcome] = await wait_for_outcomes(app_client, accepted["payload_id"], 1)
    assert outcome.data["destination_id"] == on["id"]
    assert sink.paths() == ["/on"]

    await expect(
        await app_client.post(f"/api/destinations/{off['id']}/enable/", headers=ADMIN), 200
    )
    later = await send_data(app_client, account["app_secret_token"], {"a": 2})
    assert later["destinations"] == 2
    await sink.wait_for(3)
    await wait_for_outcomes(app_client, later["payload_id"], 2)
    assert sorted(sink.paths()) == ["/off", "/on", "/on"]
    assert sink.received("/off")[0].json() == {"a": 2}


async def test_request_id_is_recorded_on_the_payload(app_client: Client) -> None:
    """A valid X-Request-ID sent with a payload is echoed and stored in PayloadReceived's
    metadata."""
    account = await create_account(app_client)
    response = await app_client.post(
        "/api/data/",
        json={"a": 1},
        headers={TOKEN_HEADER: account["app_secret_token"], "X-Request-ID": "client-7"},
    )
    await expect(response, 202)
    assert response.headers["X-Request-ID"] == "client-7"
    [received] = of_type(await log_of(app_client), "PayloadReceived")
    assert received.metadata["request_id"] == "client-7"
