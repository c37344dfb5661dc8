"""The read models are the log folded: live tables == fold from scratch == rebuilt tables."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from api.audit import rebuild
from api.http import STORE
from api.settings import Settings
from eventstore.sqlite import SQLiteEventStore
from projections.folds import fold
from projections.queries import next_due_at
from projections.runner import Projections

ADMIN = {"Authorization": "Bearer admin"}
EMAILS = ["a@example.com", "b@example.com", "A@example.com", "c@example.com"]
# Nothing listens on port 9 of loopback: attempts fail fast and their outcomes interleave
# with the commands, as they do in production.
DEAD_URL = "http://127.0.0.1:9/hook"

# Every scenario starts from two accounts with three destinations, so that the random
# operations mostly hit entities that exist.
SETUP: list[tuple[Any, ...]] = [
    ("create_account", "setup1@example.com"),
    ("create_account", "setup2@example.com"),
    ("create_destination", 1, "POST"),
    ("create_destination", 1, "GET"),
    ("create_destination", 2, "PUT"),
    ("send_payload", 1),
]
account_ids = st.integers(min_value=1, max_value=4)
destination_ids = st.integers(min_value=1, max_value=6)
operations = st.one_of(
    st.tuples(st.just("create_account"), st.sampled_from(EMAILS)),
    st.tuples(st.just("update_account"), account_ids, st.sampled_from(EMAILS)),
    st.tuples(st.just("rotate_token"), account_ids),
    st.tuples(st.just("delete_account"), account_ids),
    st.tuples(st.just("create_destination"), account_ids, st.sampled_from(["GET", "POST", "PUT"])),
    st.tuples(st.just("update_destination"), destination_ids, st.sampled_from(["GET", "PUT"])),
    st.tuples(st.just("set_enabled"), destination_ids, st.booleans()),
    st.tuples(st.just("delete_destination"), destination_ids),
    st.tuples(st.just("send_payload"), account_ids),
    st.tuples(st.just("send_payload"), st.sampled_from([1, 2])),
)


async def _run(client: TestClient[Any, Any], tokens: dict[int, str], op: tuple[Any, ...]) -> None:
    kind, *args = op
    if kind == "create_account":
        body = {"email": args[0], "account_name": "n"}
        response = await client.post("/api/accounts/", json=body, headers=ADMIN)
        if response.status == 201:
            created = await response.json()
            tokens[created["id"]] = created["app_secret_token"]
    elif kind == "update_account":
        await client.patch(f"/api/accounts/{args[0]}/", json={"email": args[1]}, headers=ADMIN)
    elif kind == "rotate_token":
        response = await client.post(f"/api/accounts/{args[0]}/rotate-token/", headers=ADMIN)
        if response.status == 200:
            tokens[args[0]] = (await response.json())["app_secret_token"]
    elif kind == "delete_account":
        await client.delete(f"/api/accounts/{args[0]}/", headers=ADMIN)
    elif kind == "create_destination":
        body = {"account": args[0], "url": DEAD_URL, "http_method": args[1], "headers": {}}
        await client.post("/api/destinations/", json=body, headers=ADMIN)
    elif kind == "update_destination":
        path = f"/api/destinations/{args[0]}/"
        await client.patch(path, json={"http_method": args[1]}, headers=ADMIN)
    elif kind == "set_enabled":
        action = "enable" if args[1] else "disable"
        await client.post(f"/api/destinations/{args[0]}/{action}/", headers=ADMIN)
    elif kind == "delete_destination":
        await client.delete(f"/api/destinations/{args[0]}/", headers=ADMIN)
    elif args[0] in tokens:
        await client.post("/api/data/", json={"n": 1}, headers={"CL-X-TOKEN": tokens[args[0]]})


async def _deliveries_settled(store: SQLiteEventStore) -> None:
    """Wait (bounded) until the worker has recorded an outcome for every open delivery."""
    async with asyncio.timeout(10):
        while await store.query(next_due_at) is not None:
            await store.wait_beyond(store.head)


async def _scenario(db: Path, ops: list[tuple[Any, ...]]) -> None:
    app = create_app(
        Settings(
            db=db,
            admin_token="admin",
            allow_private_destinations=True,
            delivery_timeout=1,
            retry_schedule=(0.01, 0.02),
        )
    )
    tokens: dict[int, str] = {}
    async with TestClient(TestServer(app)) as client:
        for op in SETUP:
            await _run(client, tokens, op)
        # Three at a time: concurrent commands must still fold to the same read models.
        for start in range(0, len(ops), 3):
            await asyncio.gather(*(_run(client, tokens, op) for op in ops[start : start + 3]))
        await _deliveries_settled(app[STORE])

    async with SQLiteEventStore(db) as store:
        live = await Projections(store).snapshot()
        folded = fold(await store.read_all(limit=1_000_000))
    assert live == folded

    # What `datapusher rebuild` does: refold every read model and diff against the live rows.
    report = await rebuild(db, out=io.StringIO())
    assert report.identical, report.render()
    async with SQLiteEventStore(db) as store:
        assert await Projections(store).snapshot() == folded


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(operations, min_size=3, max_size=24))
def test_live_read_models_equal_the_log_folded_from_scratch(ops: list[tuple[Any, ...]]) -> None:
    """For any sequence of API commands (some concurrent, with deliveries failing alongside),
    the live tables, an in-memory fold of the whole log, and `datapusher rebuild` agree."""
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_scenario(Path(directory) / "dp.sqlite3", ops))
