"""A live-tail reader that stops reading holds up nobody and still gets every event."""

from __future__ import annotations

import asyncio

from eventstore.events import AccountCreated, Metadata, account_stream, encode
from eventstore.records import NO_STREAM, StreamAppend
from tests.functional.helpers import ADMIN, Client, expect, store_of

EVENTS = 3000


async def _append_accounts(client: Client, first_id: int, count: int) -> None:
    """``count`` accounts appended straight to the log, 500 per append."""
    store = store_of(client)
    metadata = Metadata(actor="admin")
    for start in range(first_id, first_id + count, 500):
        await store.append(
            [
                StreamAppend(
                    account_stream(i),
                    NO_STREAM,
                    [
                        encode(
                            AccountCreated(
                                account_id=i,
                                email=f"tail{i}@example.com",
                                account_name="tail",
                                website=None,
                                token_sha256=f"{i:064x}",
                            ),
                            metadata,
                        )
                    ],
                )
                for i in range(start, min(start + 500, first_id + count))
            ]
        )


async def test_a_stalled_reader_does_not_hold_up_the_service(app_client: Client) -> None:
    """While one live-tail client reads nothing, thousands of events are committed and other
    requests are answered at once; when it reads again it gets every event in order."""
    async with app_client.get("/api/events/stream/?after=0", headers=ADMIN) as stalled:
        assert stalled.status == 200
        await _append_accounts(app_client, 1, EVENTS)

        answer = await asyncio.wait_for(
            app_client.get("/api/accounts/?limit=1", headers=ADMIN), timeout=2
        )
        await expect(answer, 200)

        ids: list[int] = []
        async with asyncio.timeout(20):
            while len(ids) < EVENTS:
                line = (await stalled.content.readline()).decode()
                if line.startswith("id: "):
                    ids.append(int(line[4:]))
    assert ids == list(range(1, EVENTS + 1))
