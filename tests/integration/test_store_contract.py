"""The event store's contract: what every backend of the log must guarantee.

Tests that take ``store`` run against every backend in ``conftest.BACKENDS`` and must pass
unchanged; tests that take ``sqlite_store`` pin what the SQLite file itself guarantees (its
triggers, its pragmas, its transaction hooks). The last section pins the event catalogue's
encoding, which every backend stores as ``type``, ``schema_version`` and JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import pytest
from pydantic import ValidationError

from eventstore import events
from eventstore.errors import (
    AppendRejected,
    ConcurrencyError,
    EventDecodeError,
    StorageError,
    StoreClosed,
    UnknownEventType,
)
from eventstore.records import ANY_VERSION, NO_STREAM, NewEvent, Recorded, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from tests.integration.conftest import ManagedStore, StoreFactory

WAIT = 5.0
"""Seconds within which something that must happen has happened (a hang fails, not a delay)."""

AppendOutcome = list[Recorded] | BaseException


def _event(n: int = 0) -> NewEvent:
    return NewEvent(type="Tested", data={"n": n}, metadata={"actor": "system"})


def _append(stream: str, expected: int = ANY_VERSION, count: int = 1) -> StreamAppend:
    return StreamAppend(stream, expected, [_event(n) for n in range(count)])


async def _whole_log(store: ManagedStore) -> list[Recorded]:
    return await store.read_all(limit=1_000_000)


async def _assert_gap_free(store: ManagedStore) -> None:
    positions = [record.position for record in await _whole_log(store)]
    assert positions == list(range(1, store.head + 1))


@contextlib.asynccontextmanager
async def _opened(make_store: StoreFactory) -> AsyncIterator[ManagedStore]:
    again = make_store()
    await again.open()
    try:
        yield again
    finally:
        await again.close()


class _Follower:
    """A ``follow`` iterator driven by a test; closing it cancels the reads it still awaits."""

    def __init__(self, iterator: AsyncIterator[Recorded]) -> None:
        self._iterator = iterator
        self._pending: list[asyncio.Task[Recorded]] = []

    async def next(self) -> Recorded:
        async with asyncio.timeout(WAIT):
            return await anext(self._iterator)

    def next_later(self) -> asyncio.Task[Recorded]:
        task = asyncio.create_task(self.next())
        self._pending.append(task)
        return task

    async def close(self) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        if isinstance(self._iterator, AsyncGenerator):
            await self._iterator.aclose()


@contextlib.asynccontextmanager
async def _following(store: ManagedStore, after: int, page: int = 1000) -> AsyncIterator[_Follower]:
    follower = _Follower(store.follow(after=after, page=page))
    try:
        yield follower
    finally:
        await follower.close()


# -- appending -----------------------------------------------------------------------------


async def test_empty_log_has_head_zero_and_nothing_to_read(store: ManagedStore) -> None:
    """A new log has head 0 and every read of it is empty."""
    assert store.head == 0
    assert await store.read_all() == []
    assert await store.read_stream("account-1") == []
    assert await store.read_by_position([1, 2]) == []


async def test_append_assigns_gap_free_positions_and_per_stream_versions(
    store: ManagedStore,
) -> None:
    """Positions rise by one across the log, versions count 1..n per stream, head follows."""
    first = await store.append([_append("a", NO_STREAM, count=3)])
    assert store.head == 3
    second = await store.append([_append("b", NO_STREAM, count=2)])
    assert store.head == 5
    third = await store.append([_append("a", 3, count=2)])
    assert store.head == 7

    assert [r.position for r in first + second + third] == list(range(1, 8))
    assert [(r.stream, r.version) for r in first + second + third] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 1),
        ("b", 2),
        ("a", 4),
        ("a", 5),
    ]
    assert [r.data for r in first] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_append_returns_the_events_as_they_are_read_back(store: ManagedStore) -> None:
    """What ``append`` returns equals what the log holds at those positions."""
    new = NewEvent(
        type="PayloadReceived",
        data={"body": {"text": "héllo", "list": [1, 2.5, None, True]}, "ids": [3, 4]},
        schema_version=2,
        metadata={"actor": "account:7", "request_id": "r-1", "causation": None},
    )
    recorded = await store.append([StreamAppend("payload-x", NO_STREAM, [new, new])])

    assert await store.read_by_position([r.position for r in recorded]) == recorded
    assert recorded[0].type == "PayloadReceived"
    assert recorded[0].schema_version == 2
    assert recorded[0].data == new.data
    assert recorded[0].metadata == new.metadata


async def test_recorded_at_is_iso8601_utc_with_microseconds(store: ManagedStore) -> None:
    """Every event's ``recorded_at`` is an ISO 8601 UTC time with microseconds, at commit time."""
    before = datetime.now(UTC)
    [record] = await store.append([_append("a")])
    after = datetime.now(UTC)

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(\+00:00|Z)", record.recorded_at), (
        record.recorded_at
    )
    moment = datetime.fromisoformat(record.recorded_at)
    assert moment.utcoffset() == timedelta(0)
    assert before <= moment <= after
    [stored] = await store.read_all()
    assert stored.recorded_at == record.recorded_at


async def test_multi_stream_append_is_one_run_of_positions_in_order(store: ManagedStore) -> None:
    """An append to several streams lands as consecutive positions in the order given."""
    recorded = await store.append([_append("x", NO_STREAM, 2), _append("y", NO_STREAM, 1)])

    assert [(r.position, r.stream, r.version) for r in recorded] == [
        (1, "x", 1),
        (2, "x", 2),
        (3, "y", 1),
    ]


async def test_multi_stream_append_is_all_or_nothing(store: ManagedStore) -> None:
    """If one stream of an append conflicts, none of that append's events are written."""
    await store.append([_append("taken", NO_STREAM)])

    with pytest.raises(ConcurrencyError) as caught:
        await store.append(
            [_append("fresh", NO_STREAM, 3), _append("taken", NO_STREAM), _append("other")]
        )

    assert caught.value.stream == "taken"
    assert store.head == 1
    assert await store.read_stream("fresh") == []
    assert await store.read_stream("other") == []
    [after] = await store.append([_append("fresh", NO_STREAM)])
    assert (after.position, after.version) == (2, 1)
    await _assert_gap_free(store)


# -- expected versions ---------------------------------------------------------------------


async def test_no_stream_on_an_existing_stream_conflicts(store: ManagedStore) -> None:
    """``NO_STREAM`` for a stream that exists raises ``ConcurrencyError`` naming both versions."""
    await store.append([_append("account-1", NO_STREAM, 2)])

    with pytest.raises(ConcurrencyError) as caught:
        await store.append([_append("account-1", NO_STREAM)])

    assert (caught.value.stream, caught.value.expected, caught.value.actual) == (
        "account-1",
        NO_STREAM,
        2,
    )
    assert store.head == 2
    assert len(await store.read_stream("account-1")) == 2


async def test_stale_expected_version_conflicts(store: ManagedStore) -> None:
    """An expected version behind the stream's raises ``ConcurrencyError`` and writes nothing."""
    await store.append([_append("account-1", NO_STREAM)])
    await store.append([_append("account-1", 1)])

    with pytest.raises(ConcurrencyError) as caught:
        await store.append([_append("account-1", 1)])

    assert (caught.value.expected, caught.value.actual) == (1, 2)
    assert [r.version for r in await store.read_stream("account-1")] == [1, 2]


async def test_expected_version_ahead_of_the_stream_conflicts(store: ManagedStore) -> None:
    """An expected version on a stream that does not exist yet raises ``ConcurrencyError``."""
    with pytest.raises(ConcurrencyError) as caught:
        await store.append([_append("account-9", 4)])

    assert (caught.value.expected, caught.value.actual) == (4, 0)
    assert store.head == 0


async def test_matching_expected_version_appends(store: ManagedStore) -> None:
    """The stream's current last version as expected version appends right after it."""
    await store.append([_append("account-1", NO_STREAM, 2)])

    recorded = await store.append([_append("account-1", 2, 2)])

    assert [r.version for r in recorded] == [3, 4]


async def test_any_version_appends_at_the_end(store: ManagedStore) -> None:
    """``ANY_VERSION`` skips the check: it starts a new stream or continues an existing one."""
    [created] = await store.append([_append("s", ANY_VERSION)])
    await store.append([_append("s", 1, 2)])
    [continued] = await store.append([_append("s", ANY_VERSION)])

    assert created.version == 1
    assert continued.version == 4


# -- concurrent appends --------------------------------------------------------------------


async def test_many_concurrent_appends_to_distinct_streams_all_land(store: ManagedStore) -> None:
    """500 concurrent appends to distinct streams all succeed and are all readable."""
    outcomes = await asyncio.gather(
        *(store.append([_append(f"stream-{i}", NO_STREAM, 1)]) for i in range(500))
    )

    assert sorted(r.position for [r] in outcomes) == list(range(1, 501))
    assert store.head == 500
    await _assert_gap_free(store)
    for i, [recorded] in enumerate(outcomes):
        assert recorded.stream == f"stream-{i}"
        assert await store.read_stream(f"stream-{i}") == [recorded]


async def test_concurrent_appends_with_the_same_expected_version_let_one_win(
    store: ManagedStore,
) -> None:
    """Of 100 concurrent appends expecting the same version, one lands; the rest conflict."""
    outcomes: list[AppendOutcome] = await asyncio.gather(
        *(store.append([StreamAppend("contested", NO_STREAM, [_event(i)])]) for i in range(100)),
        return_exceptions=True,
    )

    winners = [o for o in outcomes if isinstance(o, list)]
    losers = [o for o in outcomes if not isinstance(o, list)]
    assert len(winners) == 1
    assert len(losers) == 99
    for loser in losers:
        assert isinstance(loser, ConcurrencyError)
        assert (loser.stream, loser.expected, loser.actual) == ("contested", NO_STREAM, 1)
    assert await store.read_stream("contested") == winners[0]
    assert store.head == 1


async def test_concurrent_any_version_appends_to_one_stream_never_conflict(
    store: ManagedStore,
) -> None:
    """Concurrent ``ANY_VERSION`` appends to one stream all land with distinct versions."""
    outcomes = await asyncio.gather(*(store.append([_append("busy")]) for _ in range(50)))

    assert sorted(r.version for [r] in outcomes) == list(range(1, 51))
    assert [r.version for r in await store.read_stream("busy")] == list(range(1, 51))


async def test_a_conflicting_caller_does_not_fail_the_others(store: ManagedStore) -> None:
    """Conflicting appends mixed with valid ones fail alone: every valid append lands."""
    appends = [
        _append("contested", NO_STREAM) if i % 2 == 0 else _append(f"free-{i}", NO_STREAM)
        for i in range(200)
    ]
    outcomes: list[AppendOutcome] = await asyncio.gather(
        *(store.append([a]) for a in appends), return_exceptions=True
    )

    free = [o for a, o in zip(appends, outcomes, strict=True) if a.stream != "contested"]
    contested = [o for a, o in zip(appends, outcomes, strict=True) if a.stream == "contested"]
    assert all(isinstance(o, list) for o in free)
    assert sum(isinstance(o, list) for o in contested) == 1
    assert sum(isinstance(o, ConcurrencyError) for o in contested) == 99
    assert store.head == 101
    await _assert_gap_free(store)
    for a in appends:
        if a.stream != "contested":
            assert len(await store.read_stream(a.stream)) == 1


# -- cancellation and closing --------------------------------------------------------------


async def test_cancelled_append_is_still_committed(store: ManagedStore) -> None:
    """Cancelling callers of ``append`` loses none of their writes and breaks no other caller."""
    tasks = [asyncio.create_task(store.append([_append(f"s-{i}", NO_STREAM)])) for i in range(20)]
    await asyncio.sleep(0)  # every append has reached the store
    for task in tasks[::2]:
        task.cancel()

    outcomes: list[AppendOutcome] = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes[::2])
    assert all(isinstance(o, list) for o in outcomes[1::2])
    async with asyncio.timeout(WAIT):
        await store.wait_beyond(19)
    for i in range(20):
        assert [r.version for r in await store.read_stream(f"s-{i}")] == [1]
    [after] = await store.append([_append("after", NO_STREAM)])
    assert after.position == 21
    await _assert_gap_free(store)


async def test_close_commits_what_is_queued(store: ManagedStore, make_store: StoreFactory) -> None:
    """Appends already waiting when the store closes are committed and answered."""
    tasks = [asyncio.create_task(store.append([_append(f"s-{i}", NO_STREAM)])) for i in range(20)]
    await asyncio.sleep(0)  # every append has reached the store

    await store.close()

    outcomes = await asyncio.gather(*tasks)
    assert sorted(r.position for [r] in outcomes) == list(range(1, 21))
    async with _opened(make_store) as again:
        assert again.head == 20


async def test_append_after_close_raises_store_closed(store: ManagedStore) -> None:
    """Once closed, the store refuses appends with ``StoreClosed``; closing again is harmless."""
    await store.append([_append("a")])
    await store.close()

    with pytest.raises(StoreClosed):
        await store.append([_append("a")])
    await store.close()


async def test_append_before_open_raises_store_closed(make_store: StoreFactory) -> None:
    """A store that was never opened refuses appends with ``StoreClosed``."""
    with pytest.raises(StoreClosed):
        await make_store().append([_append("a")])


async def test_log_survives_reopening(store: ManagedStore, make_store: StoreFactory) -> None:
    """After close and reopen on the same location every event is there and head is right."""
    await store.append([_append("a", NO_STREAM, 3), _append("b", NO_STREAM, 1)])
    await store.append([_append("a", 3, 1)])
    before = await _whole_log(store)
    await store.close()

    async with _opened(make_store) as again:
        assert again.head == 5
        assert await _whole_log(again) == before
        [next_one] = await again.append([_append("a", 4)])
        assert (next_one.position, next_one.version) == (6, 5)


# -- reading -------------------------------------------------------------------------------


async def test_read_all_pages_through_the_log(store: ManagedStore) -> None:
    """``read_all(after, limit)`` pages cover the log once, in order, and end empty."""
    for i in range(10):
        await store.append([_append(f"s-{i % 3}")])

    pages: list[list[Recorded]] = []
    after = 0
    while page := await store.read_all(after=after, limit=3):
        pages.append(page)
        after = page[-1].position

    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [r for p in pages for r in p] == await store.read_all()
    assert [r.position for p in pages for r in p] == list(range(1, 11))
    assert await store.read_all(after=store.head) == []


async def test_read_stream_after_version(store: ManagedStore) -> None:
    """``read_stream`` returns one stream's events after ``after_version``, by version."""
    await store.append([_append("a", NO_STREAM, 2), _append("b", NO_STREAM, 2)])
    await store.append([_append("a", 2, 2)])

    assert [r.version for r in await store.read_stream("a")] == [1, 2, 3, 4]
    assert [r.position for r in await store.read_stream("a")] == [1, 2, 5, 6]
    assert [r.version for r in await store.read_stream("a", after_version=2)] == [3, 4]
    assert await store.read_stream("a", after_version=4) == []
    assert await store.read_stream("missing") == []


async def test_envelopes_as_json_equal_the_records_read(store: ManagedStore) -> None:
    """``read_envelopes`` gives, as JSON text, exactly the envelopes ``read_all`` gives, with
    the same filters, numbers and text intact."""
    data = {"big": 2**100, "f": 1.5e300, "g": 0.1, "s": "héllo \u2028 😀", "n": None}
    await store.append([StreamAppend("a", NO_STREAM, [NewEvent("T", data, metadata={"k": 1})])])
    await store.append([StreamAppend("b", NO_STREAM, [NewEvent("U", {"x": [1, True]})])])

    for filters in ({}, {"streams": ["b"]}, {"types": ["T"]}, {"after": 1, "limit": 1}):
        envelopes = await store.read_envelopes(**filters)
        records = await store.read_all(**filters)
        assert [p for p, _ in envelopes] == [r.position for r in records]
        assert [json.loads(text) for _, text in envelopes] == [r.envelope() for r in records]


async def test_read_by_position_returns_what_exists_in_log_order(store: ManagedStore) -> None:
    """``read_by_position`` returns the events at the positions asked, in log order."""
    recorded = await store.append([_append("a", NO_STREAM, 10)])

    found = await store.read_by_position([9, 2, 5, 999, 0])

    assert found == [recorded[1], recorded[4], recorded[8]]
    assert await store.read_by_position([]) == []


# -- following -----------------------------------------------------------------------------


async def test_follow_yields_existing_then_new_events(store: ManagedStore) -> None:
    """``follow(after=p)`` yields the events after ``p``, then each new one once committed."""
    await store.append([_append("a", NO_STREAM, 3)])

    async with _following(store, after=1) as follower:
        assert [(await follower.next()).position for _ in range(2)] == [2, 3]
        pending = follower.next_later()
        await asyncio.sleep(0.05)
        assert not pending.done()

        await store.append([_append("b", NO_STREAM)])
        assert (await pending).stream == "b"
        await store.append([_append("c", NO_STREAM, 2)])
        assert [(await follower.next()).position for _ in range(2)] == [5, 6]


async def test_follow_pages_through_a_long_backlog(store: ManagedStore) -> None:
    """A backlog longer than one page is yielded whole and in order."""
    await store.append([_append("a", NO_STREAM, 25)])

    async with _following(store, after=0, page=4) as follower:
        positions = [(await follower.next()).position for _ in range(25)]

    assert positions == list(range(1, 26))


async def test_caught_up_follower_waits_without_polling(store: ManagedStore) -> None:
    """A follower with nothing new to read uses almost no CPU: it waits on the store."""
    await store.append([_append("a")])

    async with _following(store, after=1) as follower:
        pending = follower.next_later()
        await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        cpu, wall = time.process_time(), loop.time()
        await asyncio.sleep(0.3)
        cpu, wall = time.process_time() - cpu, loop.time() - wall

        # A polling loop would burn about a core for the whole window; waiting burns nothing.
        assert cpu < wall / 2
        assert not pending.done()
        await store.append([_append("b")])
        assert (await pending).position == 2


async def test_wait_beyond_returns_at_once_when_head_is_past(store: ManagedStore) -> None:
    """``wait_beyond`` returns the head without waiting when the head is already past."""
    await store.append([_append("a", NO_STREAM, 3)])

    async with asyncio.timeout(WAIT):
        assert await store.wait_beyond(0) == 3
        assert await store.wait_beyond(2) == 3


async def test_wait_beyond_returns_when_an_append_commits(store: ManagedStore) -> None:
    """``wait_beyond`` returns once a commit moves the head past the position."""
    await store.append([_append("a")])
    waiter = asyncio.create_task(store.wait_beyond(1))
    await asyncio.sleep(0.02)
    assert not waiter.done()

    await store.append([_append("a", 1, 2)])

    async with asyncio.timeout(WAIT):
        assert await waiter == 3


async def test_wait_beyond_can_be_bounded_by_a_timeout(store: ManagedStore) -> None:
    """A timed-out ``wait_beyond`` raises ``TimeoutError`` and later waiters still wake."""
    await store.append([_append("a")])
    started = asyncio.get_running_loop().time()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.wait_beyond(store.head), 0.05)

    assert asyncio.get_running_loop().time() - started >= 0.04
    waiter = asyncio.create_task(store.wait_beyond(1))
    await store.append([_append("a")])
    async with asyncio.timeout(WAIT):
        assert await waiter == 2


# -- transaction hooks (SQLite) ------------------------------------------------------------


class Refused(AppendRejected):
    """The test hook's refusal of an append."""


def _create_side_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE side (position INTEGER PRIMARY KEY, stream TEXT NOT NULL)")


def _side_rows(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    return [(p, s) for p, s in conn.execute("SELECT position, stream FROM side ORDER BY position")]


def _visible(conn: sqlite3.Connection, records: Sequence[Recorded]) -> list[tuple[int, str]]:
    marks = ",".join("?" * len(records))
    rows = conn.execute(
        f"SELECT position, stream FROM events WHERE position IN ({marks}) ORDER BY position",
        [r.position for r in records],
    )
    return [(p, s) for p, s in rows]


async def test_hook_sees_its_records_and_writes_a_side_table(
    sqlite_store: SQLiteEventStore,
) -> None:
    """A hook sees the append's rows in its transaction and writes a side table with them."""
    await sqlite_store.run_in_writer(_create_side_table)
    seen: list[list[tuple[int, str]]] = []

    def hook(conn: sqlite3.Connection, records: Sequence[Recorded]) -> None:
        seen.append(_visible(conn, records))
        conn.executemany(
            "INSERT INTO side (position, stream) VALUES (?, ?)",
            [(r.position, r.stream) for r in records],
        )

    sqlite_store.add_hook(hook)
    recorded = await sqlite_store.append([_append("a", NO_STREAM, 2), _append("b", NO_STREAM)])

    expected = [(r.position, r.stream) for r in recorded]
    assert seen == [expected]
    assert await sqlite_store.query(_side_rows) == expected


async def test_hook_refusal_fails_only_its_own_append(sqlite_store: SQLiteEventStore) -> None:
    """A hook's ``AppendRejected`` reaches its caller alone; that append leaves no trace."""
    await sqlite_store.run_in_writer(_create_side_table)
    raised: dict[str, Refused] = {}

    def hook(conn: sqlite3.Connection, records: Sequence[Recorded]) -> None:
        for record in records:
            if record.stream.startswith("refused-"):
                raised[record.stream] = Refused(record.stream)
                raise raised[record.stream]
        conn.executemany(
            "INSERT INTO side (position, stream) VALUES (?, ?)",
            [(r.position, r.stream) for r in records],
        )

    sqlite_store.add_hook(hook)
    batches = [
        [_append(f"partner-{i}", NO_STREAM), _append(f"refused-{i}", NO_STREAM)]
        if i % 3 == 0
        else [_append(f"ok-{i}", NO_STREAM)]
        for i in range(30)
    ]
    outcomes: list[AppendOutcome] = await asyncio.gather(
        *(sqlite_store.append(b) for b in batches), return_exceptions=True
    )

    for i, outcome in enumerate(outcomes):
        if i % 3 == 0:
            assert outcome is raised[f"refused-{i}"]
        else:
            assert isinstance(outcome, list)
    log = await _whole_log(sqlite_store)
    assert sorted(r.stream for r in log) == sorted(f"ok-{i}" for i in range(30) if i % 3)
    assert await sqlite_store.query(_side_rows) == [(r.position, r.stream) for r in log]
    await _assert_gap_free(sqlite_store)


async def test_hook_failing_with_another_error_gives_storage_error(
    sqlite_store: SQLiteEventStore,
) -> None:
    """A hook's unexpected error reaches its caller as ``StorageError`` and undoes its append."""
    broken = ZeroDivisionError("hook bug")

    def hook(conn: sqlite3.Connection, records: Sequence[Recorded]) -> None:
        if any(r.stream == "bad" for r in records):
            raise broken

    sqlite_store.add_hook(hook)
    bad, good = await asyncio.gather(
        sqlite_store.append([_append("bad")]),
        sqlite_store.append([_append("good")]),
        return_exceptions=True,
    )

    assert isinstance(bad, StorageError)
    assert bad.__cause__ is broken
    assert isinstance(good, list)
    assert [r.stream for r in await _whole_log(sqlite_store)] == ["good"]


# -- the file itself (SQLite) --------------------------------------------------------------


def _execute_on_file(path: Path, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql, params).fetchall()


async def test_sql_update_of_an_event_is_refused(sqlite_store: SQLiteEventStore) -> None:
    """An ``UPDATE`` of the events table through plain SQL aborts and changes nothing."""
    [record] = await sqlite_store.append([_append("a")])

    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await asyncio.to_thread(
            _execute_on_file,
            sqlite_store.path,
            "UPDATE events SET data = '{}', stream = 'b' WHERE position = 1",
        )

    assert await sqlite_store.read_by_position([1]) == [record]


async def test_sql_delete_of_an_event_is_refused(sqlite_store: SQLiteEventStore) -> None:
    """A ``DELETE`` from the events table through plain SQL aborts and removes nothing."""
    [record] = await sqlite_store.append([_append("a")])

    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await asyncio.to_thread(_execute_on_file, sqlite_store.path, "DELETE FROM events")

    assert await sqlite_store.read_all() == [record]


async def test_sql_insert_of_a_duplicate_version_is_refused(
    sqlite_store: SQLiteEventStore,
) -> None:
    """``UNIQUE(stream, version)`` refuses a second event with the same stream and version."""
    await sqlite_store.append([_append("a", NO_STREAM)])

    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await asyncio.to_thread(
            _execute_on_file,
            sqlite_store.path,
            "INSERT INTO events (stream, version, type, data, metadata, recorded_at) "
            "VALUES ('a', 1, 'Tested', '{}', '{}', '2024-01-01T00:00:00.000000+00:00')",
        )

    assert [r.version for r in await sqlite_store.read_stream("a")] == [1]


async def test_log_file_is_in_wal_mode(sqlite_store: SQLiteEventStore) -> None:
    """The log's file is in WAL journal mode."""
    rows = await asyncio.to_thread(_execute_on_file, sqlite_store.path, "PRAGMA journal_mode")

    assert rows == [("wal",)]


# -- data and shutdown ----------------------------------------------------------------------


async def test_append_accepts_any_mapping_as_data(sqlite_store: SQLiteEventStore) -> None:
    """``NewEvent.data`` is a ``Mapping``, so a read-only mapping is appended like a dict."""
    data = MappingProxyType({"n": 1})

    [record] = await sqlite_store.append([StreamAppend("a", NO_STREAM, [NewEvent("T", data)])])

    assert (await sqlite_store.read_by_position([record.position]))[0].data == {"n": 1}


async def test_reads_racing_close_raise_store_closed(store: SQLiteEventStore) -> None:
    """A read that meets a closing store gets ``StoreClosed``, never a library error."""
    closing = asyncio.create_task(store.close())
    failures: set[type[BaseException]] = set()
    while not closing.done():
        try:
            await store.read_all()
        except Exception as exc:
            failures.add(type(exc))
        await asyncio.sleep(0)
    await closing

    assert failures <= {StoreClosed}


async def test_cancelling_close_still_answers_every_queued_append(
    store: SQLiteEventStore,
) -> None:
    """Cancelling the caller of ``close`` does not cancel the writer: queued appends land."""
    appends = [
        asyncio.create_task(
            store.append([StreamAppend(f"s-{i}", ANY_VERSION, [NewEvent("T", {})])])
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)

    done, pending = await asyncio.wait(appends, timeout=5)

    assert not pending
    assert all(task.exception() is None for task in done)
    await store.close()


async def test_close_wakes_waiters_with_store_closed(store: SQLiteEventStore) -> None:
    """A ``wait_beyond`` in progress ends with ``StoreClosed`` when the store closes."""
    waiter = asyncio.create_task(store.wait_beyond(store.head))
    await asyncio.sleep(0)

    await store.close()

    with pytest.raises(StoreClosed):
        await asyncio.wait_for(waiter, timeout=2)


# -- the event catalogue -------------------------------------------------------------------

CATALOGUE = (
    "AccountCreated",
    "AccountUpdated",
    "AccountTokenRotated",
    "AccountDeleted",
    "DestinationCreated",
    "DestinationUpdated",
    "DestinationDisabled",
    "DestinationEnabled",
    "DestinationDeleted",
    "PayloadReceived",
    "DeliverySucceeded",
    "DeliveryAttemptFailed",
    "DeliveryFailed",
    "DeliveryReplayRequested",
)
"""The catalogue in DESIGN.md ("The log"): names are stored, so they are part of the contract."""

PAYLOAD = "01J9Z8Q4W7M3K5N6P2R8S0T1V4"
ATTEMPT: dict[str, Any] = {
    "payload_id": PAYLOAD,
    "destination_id": 2,
    "attempt": 3,
    "duration_ms": 12.5,
    "response_excerpt": "sorry",
}

EXAMPLES: tuple[events.Event, ...] = (
    events.AccountCreated(
        account_id=1,
        email="a@example.com",
        account_name="Acme",
        website=None,
        token_sha256="0" * 64,
    ),
    events.AccountUpdated(
        account_id=1, email="b@example.com", account_name="Acme 2", website="https://a.example"
    ),
    events.AccountTokenRotated(account_id=1, token_sha256="f" * 64),
    events.AccountDeleted(account_id=1),
    events.DestinationCreated(
        destination_id=2,
        account_id=1,
        url="https://hooks.example/in",
        http_method="POST",
        headers={"X-Key": "value"},
    ),
    events.DestinationUpdated(
        destination_id=2, account_id=1, url="https://hooks.example/q", http_method="GET", headers={}
    ),
    events.DestinationDisabled(destination_id=2, reason="gone"),
    events.DestinationEnabled(destination_id=2),
    events.DestinationDeleted(destination_id=2, account_id=1),
    events.PayloadReceived(
        payload_id=PAYLOAD,
        account_id=1,
        body={"text": "héllo", "nested": {"list": [1, 2.5, None, True]}},
        destination_ids=[2, 3],
        body_sha256="0" * 64,
        idempotency_key="retry-1",
    ),
    events.DeliverySucceeded(**ATTEMPT, status_code=200, trigger="scheduled"),
    events.DeliveryAttemptFailed(
        **ATTEMPT,
        status_code=None,
        trigger="recover",
        error="timeout",
        next_attempt_at="2024-05-01T12:00:00.000000+00:00",
    ),
    events.DeliveryFailed(**ATTEMPT, status_code=503, trigger="manual", error="http"),
    events.DeliveryReplayRequested(payload_id=PAYLOAD, destination_ids=[2]),
)

METADATA = events.Metadata(actor="account:1", request_id="req-1", causation=4)


def _record(type_name: str, data: Mapping[str, Any], schema_version: int = 1) -> Recorded:
    return Recorded(
        position=1,
        stream="account-1",
        version=1,
        type=type_name,
        schema_version=schema_version,
        data=data,
        metadata={},
        recorded_at="2024-05-01T12:00:00.000000+00:00",
    )


def test_catalogue_names_are_the_documented_ones() -> None:
    """The stored type names are exactly the documented catalogue, each naming its model."""
    assert sorted(events.EVENT_TYPES) == sorted(CATALOGUE)
    for name, model in events.EVENT_TYPES.items():
        assert model.model_fields["type"].default == name


def test_examples_cover_every_event_type() -> None:
    """This suite has one example of every type in the catalogue (a new type needs one)."""
    assert sorted(example.type for example in EXAMPLES) == sorted(events.EVENT_TYPES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: str(e.type))
def test_encode_gives_type_version_and_json_data(example: events.Event) -> None:
    """``encode`` stores the type name apart from data, the schema version, and the metadata."""
    new = events.encode(example, METADATA)

    assert new.type == example.type
    assert "type" not in new.data
    assert new.schema_version == events.EVENT_TYPES[example.type].schema_version
    assert new.metadata == {"actor": "account:1", "request_id": "req-1", "causation": 4}


async def test_every_event_type_round_trips_through_the_store(store: ManagedStore) -> None:
    """Each type, encoded, appended, read back and decoded, equals the original event."""
    appended = await store.append(
        [
            StreamAppend(f"s-{i}", NO_STREAM, [events.encode(e, METADATA)])
            for i, e in enumerate(EXAMPLES)
        ]
    )

    read_back = await store.read_by_position([r.position for r in appended])

    assert [events.decode(r) for r in read_back] == list(EXAMPLES)
    assert [r.type for r in read_back] == [e.type for e in EXAMPLES]


@pytest.mark.parametrize("type_name", ["AccountExploded", "eventstore.events.AccountCreated", ""])
def test_decode_of_an_unknown_type_raises_unknown_event_type(type_name: str) -> None:
    """A stored type the catalogue does not know raises ``UnknownEventType``."""
    with pytest.raises(UnknownEventType):
        events.decode(_record(type_name, {"account_id": 1}))


@pytest.mark.parametrize(
    ("type_name", "data"),
    [
        ("AccountDeleted", {}),
        ("AccountDeleted", {"account_id": "seven"}),
        ("AccountDeleted", {"account_id": 1, "surprise": True}),
        ("DestinationDisabled", {"destination_id": 2, "reason": "bored"}),
        ("DeliveryFailed", {**ATTEMPT, "status_code": 500, "trigger": "manual", "error": "x"}),
        (
            "PayloadReceived",
            {"payload_id": PAYLOAD, "account_id": 1, "body": [], "destination_ids": []},
        ),
    ],
    ids=["missing", "wrong-type", "extra", "bad-literal", "bad-error-class", "body-not-object"],
)
def test_decode_of_bad_data_raises_event_decode_error(type_name: str, data: dict[str, Any]) -> None:
    """Data that does not fit its type's model raises ``EventDecodeError``, from pydantic's."""
    with pytest.raises(EventDecodeError) as caught:
        events.decode(_record(type_name, data))

    assert isinstance(caught.value.__cause__, ValidationError)


@pytest.mark.parametrize(
    "data", [42, "text", None, ["ab"]], ids=["number", "string", "null", "list"]
)
def test_decode_of_data_that_is_not_an_object_raises_event_decode_error(data: object) -> None:
    """Stored data that is not a JSON object raises ``EventDecodeError``, like any bad data."""
    with pytest.raises(EventDecodeError):
        events.decode(_record("AccountDeleted", cast(Mapping[str, Any], data)))


def test_upcast_leaves_current_data_as_it_is() -> None:
    """Data already at its type's current version comes back equal, as a new dict."""
    data = {"account_id": 1}
    current = events.AccountDeleted.schema_version

    upcast = events.upcast("AccountDeleted", current, data)

    assert upcast == data
    upcast["account_id"] = 2
    assert data == {"account_id": 1}


def test_upcast_of_a_version_without_upcaster_raises_event_decode_error() -> None:
    """An older schema version with no upcaster is refused, never decoded as if current."""
    with pytest.raises(EventDecodeError):
        events.decode(_record("AccountDeleted", {"account_id": 1}, schema_version=0))


def test_upcasters_chain_every_old_version_to_the_current_one() -> None:
    """Every type has an upcaster from each of its older versions, and none for unknown ones."""
    for name, model in events.EVENT_TYPES.items():
        for version in range(1, model.schema_version):
            assert (name, version) in events.UPCASTERS, (name, version)
    for name, version in events.UPCASTERS:
        assert name in events.EVENT_TYPES
        assert 1 <= version < events.EVENT_TYPES[name].schema_version
