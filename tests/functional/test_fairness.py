"""Fairness: a destination that hangs holds only its own slots; the others keep being served."""

from __future__ import annotations

from typing import Any, Final

import pytest

from tests.functional.conftest import MakeClient
from tests.functional.helpers import Client, create_account, create_destination, send_data
from tests.sink import Sink

PER_DESTINATION: Final = 2
BACKLOG: Final = 20
HANG: Final = 30.0
"""Seconds the slow destination holds each request; the sink releases it at teardown."""
PROMPTLY: Final = 2.0


async def fair_client(make_client: MakeClient) -> Client:
    """An app whose attempts never time out during a test and are cancelled at once on exit."""
    return await make_client(
        per_destination_concurrency=PER_DESTINATION,
        delivery_timeout=HANG * 2,
        shutdown_grace=0,
    )


async def hang_with_backlog(client: Client, sink: Sink) -> dict[str, Any]:
    """An account whose one destination hangs, fed ``BACKLOG`` payloads; waits until the
    destination holds the requests it may hold, and returns the account."""
    sink.answer("/slow", delay=HANG)
    account = await create_account(client)
    await create_destination(client, account["id"], sink.url("/slow"))
    for n in range(BACKLOG):
        await send_data(client, account["app_secret_token"], {"n": n})
    await sink.wait_for(PER_DESTINATION, path="/slow")
    return account


@pytest.mark.parametrize("same_account", [False, True], ids=["other-account", "same-account"])
async def test_a_hanging_destination_does_not_hold_up_another(
    make_client: MakeClient, sink: Sink, same_account: bool
) -> None:
    """A payload for a fast destination is delivered while a hanging destination with a backlog
    holds exactly its per-destination limit of requests, whether the fast one belongs to
    another account or to the same one."""
    client = await fair_client(make_client)
    slow_account = await hang_with_backlog(client, sink)
    account = slow_account if same_account else await create_account(client)
    await create_destination(client, account["id"], sink.url("/fast"))

    accepted = await send_data(client, account["app_secret_token"], {"fast": True})

    [fast] = await sink.wait_for(1, PROMPTLY, path="/fast")
    assert fast.webhook_id == accepted["payload_id"]
    assert len(sink.received("/slow")) == PER_DESTINATION
