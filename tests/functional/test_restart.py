"""State and pending deliveries survive a restart of the app on the same file."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.settings import Settings
from tests.functional.helpers import (
    ADMIN,
    create_account,
    create_destination,
    expect,
    log_of,
    of_type,
    send_data,
    wait_for_outcomes,
)
from tests.sink import Sink


async def test_restart_keeps_state_and_delivers_what_was_in_flight(
    settings: Settings, sink: Sink
) -> None:
    """A payload whose attempt was cut off by a stop is delivered after the next start, as a
    ``recover`` attempt; accounts and destinations read the same after the restart."""
    settings = settings.model_copy(update={"shutdown_grace": 0.2})
    sink.answer("/hook", delay=30)
    async with TestClient(TestServer(create_app(settings))) as first:
        account = await create_account(first)
        destination = await create_destination(first, account["id"], sink.url("/hook"))
        accepted = await send_data(first, account["app_secret_token"], {"k": 1})
        await sink.wait_for(1)
        before = await expect(
            await first.get(f"/api/accounts/{account['id']}/", headers=ADMIN), 200
        )
    # The attempt was cancelled at shutdown: nothing about it is in the log.
    sink.answer("/hook", 200)

    async with TestClient(TestServer(create_app(settings))) as second:
        after = await expect(
            await second.get(f"/api/accounts/{account['id']}/", headers=ADMIN), 200
        )
        assert after == before
        kept = await expect(
            await second.get(f"/api/destinations/{destination['id']}/", headers=ADMIN), 200
        )
        assert kept == destination
        [outcome] = await wait_for_outcomes(second, accepted["payload_id"], 1)
        assert outcome.type == "DeliverySucceeded"
        assert outcome.data["trigger"] == "recover"
        assert outcome.data["attempt"] == 1
        assert len(of_type(await log_of(second), "PayloadReceived")) == 1

    assert sink.count(accepted["payload_id"]) == 2
