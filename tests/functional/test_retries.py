"""Retries: what is retried, on which schedule, what gives up, and what survives a restart.

Every test runs the real app with a compressed retry schedule against a real loopback sink.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp.plugin import AiohttpServer
from yarl import URL

from api.app import create_app
from api.settings import Settings
from tests.functional.conftest import MakeClient
from tests.functional.helpers import (
    ADMIN,
    account_with_destination,
    delivery_in,
    expect,
    log_of,
    of_type,
    payload_view,
    send_data,
    steps,
    wait_for_outcomes,
)
from tests.sink import Answer, Sink

SCHEDULE = (0.05, 0.1, 0.2)


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one ISO 8601 time of the log to another."""
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def closed_port() -> int:
    """A loopback port nothing listens on (bound for a moment, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_failures_then_success_are_logged_per_attempt(
    make_client: MakeClient, sink: Sink
) -> None:
    """500, 500, 200 is logged as two DeliveryAttemptFailed (with status, error and the next
    attempt's time) and a DeliverySucceeded at attempt 3, each retry made no earlier than
    scheduled and every request carrying the same webhook-id."""
    client = await make_client(retry_schedule=SCHEDULE)
    sink.script("/hook", Answer(500), Answer(500), Answer(200))
    account, destination = await account_with_destination(client, sink.url("/hook"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 3)

    assert steps(outcomes) == [
        ("DeliveryAttemptFailed", 1),
        ("DeliveryAttemptFailed", 2),
        ("DeliverySucceeded", 3),
    ]
    first, second, third = outcomes
    for failed in (first, second):
        assert failed.data["status_code"] == 500
        assert failed.data["error"] == "http"
        assert failed.data["destination_id"] == destination["id"]
        assert failed.data["trigger"] == "scheduled"
        assert seconds_between(failed.recorded_at, failed.data["next_attempt_at"]) > 0
    assert third.data["status_code"] == 200
    assert "error" not in third.data or third.data["error"] is None
    # A retry is never made before the time its failure scheduled.
    assert second.recorded_at >= first.data["next_attempt_at"]
    assert third.recorded_at >= second.data["next_attempt_at"]
    assert sink.count(accepted["payload_id"]) == 3
    assert sink.paths() == ["/hook"] * 3


async def test_gives_up_after_the_schedule_with_delivery_failed(
    make_client: MakeClient, sink: Sink
) -> None:
    """A sink that always answers 503 gets one attempt per schedule step plus the first:
    three DeliveryAttemptFailed, then DeliveryFailed alone at attempt 4 with that attempt's
    details, and the payload's delivery reads "failed"."""
    client = await make_client(retry_schedule=SCHEDULE)
    sink.answer("/down", 503, body=b"maintenance")
    account, destination = await account_with_destination(client, sink.url("/down"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 4)

    assert steps(outcomes) == [
        ("DeliveryAttemptFailed", 1),
        ("DeliveryAttemptFailed", 2),
        ("DeliveryAttemptFailed", 3),
        ("DeliveryFailed", 4),
    ]
    final = outcomes[-1]
    assert final.data["status_code"] == 503
    assert final.data["error"] == "http"
    assert final.data["response_excerpt"] == "maintenance"
    assert final.data.get("next_attempt_at") is None
    assert sink.count(accepted["payload_id"]) == 4

    delivery = delivery_in(await payload_view(client, accepted["payload_id"]), destination["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"] == 4
    assert delivery["next_attempt_at"] is None
    assert delivery["last_status_code"] == 503
    assert delivery["last_error"] == "http"


async def test_connection_refused_is_retried_as_connect(make_client: MakeClient) -> None:
    """A closed loopback port fails with error "connect" and no status code, and is retried."""
    client = await make_client(retry_schedule=(0.05,))
    account, _ = await account_with_destination(client, f"http://127.0.0.1:{closed_port()}/")
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 2)

    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliveryFailed", 2)]
    for outcome in outcomes:
        assert outcome.data["error"] == "connect"
        assert outcome.data["status_code"] is None
        assert outcome.data["response_excerpt"]


async def test_timeout_is_retried_as_timeout(make_client: MakeClient, sink: Sink) -> None:
    """A sink slower than the delivery timeout fails with error "timeout" and is retried."""
    client = await make_client(retry_schedule=(0.05,), delivery_timeout=0.3)
    sink.answer("/slow", delay=5.0)
    account, _ = await account_with_destination(client, sink.url("/slow"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 2)

    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliveryFailed", 2)]
    for outcome in outcomes:
        assert outcome.data["error"] == "timeout"
        assert outcome.data["status_code"] is None
        assert outcome.data["duration_ms"] >= 250
    assert sink.count(accepted["payload_id"]) == 2


@pytest.mark.parametrize("status", [400, 404, 429])
async def test_client_errors_are_retried(make_client: MakeClient, sink: Sink, status: int) -> None:
    """A 4xx other than 410 is retried like any failure, until the schedule is used up."""
    client = await make_client(retry_schedule=(0.05,))
    sink.answer("/hook", status)
    account, _ = await account_with_destination(client, sink.url("/hook"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 2)

    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliveryFailed", 2)]
    assert [o.data["status_code"] for o in outcomes] == [status, status]
    assert [o.data["error"] for o in outcomes] == ["http", "http"]
    assert sink.count(accepted["payload_id"]) == 2


async def test_redirect_is_retried_and_not_followed(
    make_client: MakeClient, aiohttp_server: AiohttpServer
) -> None:
    """A 302 with a Location is a failed attempt that is retried; the redirect's target
    receives nothing."""
    sink = Sink()
    sink.answer("/moved", 302)

    async def point_elsewhere(_request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 302:
            response.headers["Location"] = sink.url("/target")

    sink.app.on_response_prepare.append(point_elsewhere)
    server = await aiohttp_server(sink.app)
    sink.base_url = str(server.make_url("")).rstrip("/")

    client = await make_client(retry_schedule=(0.05,))
    account, _ = await account_with_destination(client, sink.url("/moved"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    outcomes = await wait_for_outcomes(client, accepted["payload_id"], 2)

    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliveryFailed", 2)]
    assert [o.data["status_code"] for o in outcomes] == [302, 302]
    assert sink.paths() == ["/moved", "/moved"]
    assert sink.received("/target") == []


async def test_gone_fails_at_once_and_disables_the_destination(
    make_client: MakeClient, sink: Sink
) -> None:
    """A 410 is DeliveryFailed plus DestinationDisabled (reason "gone") in one append, with no
    retry, and later payloads are not sent to that destination."""
    client = await make_client(retry_schedule=SCHEDULE)
    sink.answer("/gone", 410)
    account, destination = await account_with_destination(client, sink.url("/gone"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    [failed] = await wait_for_outcomes(client, accepted["payload_id"], 1)

    assert (failed.type, failed.data["attempt"]) == ("DeliveryFailed", 1)
    assert failed.data["status_code"] == 410
    [disabled] = of_type(await log_of(client), "DestinationDisabled")
    assert disabled.data == {"destination_id": destination["id"], "reason": "gone"}
    assert disabled.position == failed.position + 1
    assert disabled.recorded_at == failed.recorded_at

    current = await expect(
        await client.get(f"/api/destinations/{destination['id']}/", headers=ADMIN), 200
    )
    assert current["enabled"] is False
    assert current["disabled_reason"] == "gone"
    later = await send_data(client, account["app_secret_token"], {"n": 2})
    assert later["destinations"] == 0
    delivery = delivery_in(await payload_view(client, accepted["payload_id"]), destination["id"])
    assert (delivery["status"], delivery["attempts"]) == ("failed", 1)
    assert sink.count(accepted["payload_id"]) == 1
    assert sink.count(later["payload_id"]) == 0


async def first_retry_gap(
    make_client: MakeClient, sink: Sink, status: int, retry_after: int | str
) -> float:
    """Seconds from the first failure's recording to its retry's due time, with a single 1 s
    schedule step and a sink answering ``status`` with ``Retry-After: retry_after``."""
    client = await make_client(retry_schedule=(1.0,))
    sink.answer("/busy", status, retry_after=retry_after)
    account, _ = await account_with_destination(client, sink.url("/busy"))
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    [failed] = await wait_for_outcomes(client, accepted["payload_id"], 1)
    assert failed.type == "DeliveryAttemptFailed"
    assert failed.data["status_code"] == status
    return seconds_between(failed.recorded_at, failed.data["next_attempt_at"])


@pytest.mark.parametrize(
    ("status", "form"), [(429, "seconds"), (503, "seconds"), (503, "http-date")]
)
async def test_retry_after_is_honoured_up_to_twice_the_delay(
    make_client: MakeClient, sink: Sink, status: int, form: str
) -> None:
    """A Retry-After (in seconds or as an HTTP date) far beyond the scheduled delay on a 429
    or 503 postpones the retry, but only to twice the delay: with a 1 s step (±20% jitter) it
    is due more than 1.2 s and at most 2.4 s after the failure, not 30 s."""
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    retry_after: int | str = 30 if form == "seconds" else later
    gap = await first_retry_gap(make_client, sink, status, retry_after)
    assert 1.2 < gap <= 2.4


@pytest.mark.parametrize(
    ("status", "retry_after"), [(503, 0), (500, 30)], ids=["shorter", "not-429-or-503"]
)
async def test_retry_after_never_shortens_and_only_counts_on_429_and_503(
    make_client: MakeClient, sink: Sink, status: int, retry_after: int
) -> None:
    """A Retry-After shorter than the scheduled delay, or sent with another status, leaves
    the retry within the jittered 1 s step."""
    gap = await first_retry_gap(make_client, sink, status, retry_after)
    assert 0.6 < gap <= 1.2


def loopback_name() -> str | None:
    """This machine's host name if it resolves to loopback addresses only, else None."""
    name = socket.gethostname()
    try:
        answers = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return None
    addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in answers}
    if not addresses or not all(a.is_loopback for a in addresses):
        return None
    return name


async def test_name_resolving_to_loopback_is_blocked_at_send(
    make_client: MakeClient, sink: Sink
) -> None:
    """With private destinations off, a name that resolves to loopback is accepted at creation
    but its delivery fails at once with error "blocked", and the sink receives nothing."""
    name = await asyncio.to_thread(loopback_name)
    if name is None:
        pytest.skip("no host name here resolves to loopback only")
    client = await make_client(retry_schedule=SCHEDULE, allow_private_destinations=False)
    port = URL(sink.url("/")).port
    account, _ = await account_with_destination(client, f"http://{name}:{port}/hook")
    accepted = await send_data(client, account["app_secret_token"], {"n": 1})
    [failed] = await wait_for_outcomes(client, accepted["payload_id"], 1)

    assert (failed.type, failed.data["attempt"]) == ("DeliveryFailed", 1)
    assert failed.data["error"] == "blocked"
    assert failed.data["status_code"] is None
    assert sink.requests == []


async def test_private_destination_is_blocked_when_no_longer_allowed(
    settings: Settings, sink: Sink
) -> None:
    """A localhost destination created while private destinations were allowed is blocked at
    send time once the service runs with them disallowed: DeliveryFailed with error
    "blocked" after one attempt, and the sink receives nothing."""
    port = URL(sink.url("/")).port
    allowing = settings.model_copy(update={"retry_schedule": SCHEDULE})
    async with TestClient(TestServer(create_app(allowing))) as first:
        account, _ = await account_with_destination(first, f"http://localhost:{port}/hook")

    refusing = allowing.model_copy(update={"allow_private_destinations": False})
    async with TestClient(TestServer(create_app(refusing))) as second:
        accepted = await send_data(second, account["app_secret_token"], {"n": 1})
        [failed] = await wait_for_outcomes(second, accepted["payload_id"], 1)

    assert (failed.type, failed.data["attempt"]) == ("DeliveryFailed", 1)
    assert failed.data["error"] == "blocked"
    assert sink.requests == []


async def test_restart_resumes_a_pending_retry_at_its_time(settings: Settings, sink: Sink) -> None:
    """A retry scheduled before a stop is made after the next start, and not before its
    recorded next_attempt_at."""
    settings = settings.model_copy(update={"retry_schedule": (1.0,)})
    sink.script("/hook", Answer(500), Answer(200))
    async with TestClient(TestServer(create_app(settings))) as first:
        account, destination = await account_with_destination(first, sink.url("/hook"))
        accepted = await send_data(first, account["app_secret_token"], {"n": 1})
        [failed] = await wait_for_outcomes(first, accepted["payload_id"], 1)
    assert failed.type == "DeliveryAttemptFailed"
    due = failed.data["next_attempt_at"]

    async with TestClient(TestServer(create_app(settings))) as second:
        outcomes = await wait_for_outcomes(second, accepted["payload_id"], 2)
        delivery = delivery_in(
            await payload_view(second, accepted["payload_id"]), destination["id"]
        )

    assert steps(outcomes) == [("DeliveryAttemptFailed", 1), ("DeliverySucceeded", 2)]
    assert outcomes[1].recorded_at >= due
    retry = sink.received("/hook")[1]
    assert retry.received_at >= datetime.fromisoformat(due).timestamp()
    assert delivery["status"] == "delivered"
    assert sink.count(accepted["payload_id"]) == 2
