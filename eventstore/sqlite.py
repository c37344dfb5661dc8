"""The log in one SQLite file: one writer task with group commit, one reader connection.

Why one writer task: SQLite has one write lock. Every append waits in a queue; the writer
takes whatever is queued and commits it in one transaction (one fsync for the batch), each
append inside its own SAVEPOINT so that a conflict or a refused hook fails only its own caller.
Transaction hooks (the read-model projectors) run inside that same savepoint, so a read model
is never behind or ahead of the log it was folded from.

Every SQLite call runs on the connection's own thread: a whole batch is one call there, not
one await per row.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import aiosqlite

from eventstore import codec, schema
from eventstore.errors import (
    ConcurrencyError,
    EventStoreError,
    StorageError,
    StoreClosed,
)
from eventstore.records import ANY_VERSION, Recorded, StreamAppend

T = TypeVar("T")

TransactionHook = Callable[[sqlite3.Connection, Sequence[Recorded]], None]
"""Runs on the writer thread inside an append's savepoint, after its rows are inserted.

It may write other tables of the same file; raising ``AppendRejected`` (or any error)
undoes the append and fails its caller only.
"""

Synchronous = Literal["FULL", "NORMAL"]

SELECT_EVENTS = (
    "SELECT position, stream, version, type, schema_version, data, metadata, recorded_at "
    "FROM events"
)


@dataclass(slots=True)
class _Job:
    """One caller's work for the writer: an append, or a function run in its own transaction."""

    future: asyncio.Future[Any]
    appends: Sequence[StreamAppend] = ()
    call: Callable[[sqlite3.Connection], Any] | None = None
    outcome: Any = field(default=None)


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn`` with the raw connection on the connection's own thread.

    aiosqlite has no public call for this; its internal queue is exactly the "function run on
    the connection's thread" that lets a whole batch cost one hop instead of one per row.
    """
    result = await conn._execute(lambda: fn(conn._conn))  # type: ignore[no-untyped-call]
    return cast(T, result)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def row_to_record(row: Sequence[Any]) -> Recorded:
    """A row of ``SELECT`` columns in table order, as a ``Recorded``."""
    return Recorded(
        position=row[0],
        stream=row[1],
        version=row[2],
        type=row[3],
        schema_version=row[4],
        data=codec.loads(row[5]),
        metadata=codec.loads(row[6]),
        recorded_at=row[7],
    )


class SQLiteEventStore:
    """The event store on one SQLite file (WAL). Use ``open`` and ``close``, or ``async with``."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        max_batch: int = 1000,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._hooks: list[TransactionHook] = []
        self._listeners: list[Callable[[Sequence[Recorded]], None]] = []
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._head = 0
        self._advanced = asyncio.Event()
        self._closing = False

    async def __aenter__(self) -> SQLiteEventStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def head(self) -> int:
        return self._head

    def add_hook(self, hook: TransactionHook) -> None:
        """Register a hook run in every append's transaction (see ``TransactionHook``)."""
        self._hooks.append(hook)

    def add_listener(self, listener: Callable[[Sequence[Recorded]], None]) -> None:
        """Call ``listener(records)`` on the event loop after each commit that added events,
        with every event that commit added, before any of their appenders is answered."""
        self._listeners.append(listener)

    async def open(self) -> None:
        """Open both connections, create or migrate the schema, start the writer task."""
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            await _on_thread(self._writer, self._prepare_writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await _on_thread(self._reader, self._prepare_reader)
            self._head = await _on_thread(self._reader, _read_head)
        except sqlite3.Error as exc:
            await self._close_connections()
            raise StorageError(f"cannot open the log at {self.path}: {exc}") from exc
        self._closing = False
        self._writer_task = asyncio.create_task(self._run_writer(), name="eventstore-writer")

    def _prepare_writer(self, conn: sqlite3.Connection) -> None:
        schema.configure(conn, synchronous=self._synchronous)
        schema.migrate(conn)

    def _prepare_reader(self, conn: sqlite3.Connection) -> None:
        schema.configure(conn, synchronous=self._synchronous)
        conn.execute("PRAGMA query_only=ON")

    async def close(self) -> None:
        """Refuse new work, commit what is queued, stop the writer, close the connections.

        Waiters in ``wait_beyond`` and ``follow`` get ``StoreClosed``. Cancelling the caller
        does not cancel the writer: every queued append is still committed and answered.
        """
        self._closing = True
        self._advanced.set()
        if self._writer_task is not None:
            self._queue.put_nowait(None)
            await asyncio.shield(self._writer_task)
            self._writer_task = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        for conn in (writer, reader):
            if conn is not None:
                await conn.close()

    # -- writing -------------------------------------------------------------------------

    async def append(self, appends: Sequence[StreamAppend]) -> list[Recorded]:
        recorded: list[Recorded] = await self._submit(_Job(self._future(), appends=appends))
        return recorded

    async def run_in_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread, in its own savepoint of the next batch's transaction.

        It is serialized with appends; if it raises, only its own writes are undone and the
        error (as ``StorageError`` unless it is an ``EventStoreError``) reaches this caller.
        Used to create read-model tables and to catch them up.
        """
        result: T = await self._submit(_Job(self._future(), call=fn))
        return result

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        if self._closing or self._writer_task is None:
            raise StoreClosed("the event store is not open")
        self._queue.put_nowait(job)
        # Shielded: a caller that gives up (a client disconnecting) must not cancel a write
        # that other appends share; it will still be committed.
        return await asyncio.shield(job.future)

    async def _run_writer(self) -> None:
        assert self._writer is not None
        stop = False
        while not stop:
            batch: list[_Job] = []
            job = await self._queue.get()
            while job is not None:
                batch.append(job)
                if self._queue.empty() or len(batch) >= self._max_batch:
                    break
                job = self._queue.get_nowait()
            stop = job is None
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_Job]) -> None:
        assert self._writer is not None
        try:
            head = await _on_thread(self._writer, lambda conn: self._commit(conn, batch))
        except Exception as exc:  # the batch is rolled back: every caller in it must hear so
            failure = StorageError(f"the log could not commit: {exc}")
            failure.__cause__ = exc
            for job in batch:
                job.outcome = failure
        else:
            if head > self._head:
                self._head = head
                self._advanced.set()
                self._advanced = asyncio.Event()
                committed = [
                    record
                    for job in batch
                    if job.call is None and isinstance(job.outcome, list)
                    for record in job.outcome
                ]
                for listener in self._listeners:
                    listener(committed)
        for job in batch:
            if job.future.done():
                continue
            if isinstance(job.outcome, BaseException):
                job.future.set_exception(job.outcome)
            else:
                job.future.set_result(job.outcome)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job]) -> int:
        """On the writer thread: one transaction for the batch; returns the new head."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = _now()
            for job in batch:
                job.outcome = self._in_savepoint(conn, job, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return _read_head(conn)

    def _in_savepoint(self, conn: sqlite3.Connection, job: _Job, now: str) -> Any:
        """Do one job in its own savepoint; its failure is its outcome, not the batch's."""
        conn.execute("SAVEPOINT job")
        try:
            if job.call is not None:
                outcome = job.call(conn)
            else:
                outcome = _insert(conn, job.appends, now)
                for hook in self._hooks:
                    hook(conn, outcome)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            if isinstance(exc, EventStoreError):
                return exc
            failure = StorageError(f"the write failed: {exc}")
            failure.__cause__ = exc
            return failure
        conn.execute("RELEASE job")
        return outcome

    # -- reading -------------------------------------------------------------------------

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[Recorded]:
        where, params = _filters(after, streams, types, until)
        return await self._read(
            f"{SELECT_EVENTS} WHERE {where} ORDER BY position LIMIT ?", (*params, max(limit, 0))
        )

    async def read_envelopes(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[int, str]]:
        """Like ``read_all``, but each event as ``(position, envelope JSON text)``, built by
        SQLite from the stored JSON: for answers that only pass the log on, nothing is
        decoded into Python objects and encoded again."""
        where, params = _filters(after, streams, types, None)
        sql = f"SELECT position, {_ENVELOPE} FROM events WHERE {where} ORDER BY position LIMIT ?"
        rows = await self.query(lambda conn: conn.execute(sql, (*params, max(limit, 0))).fetchall())
        return [(int(position), str(text)) for position, text in rows]

    async def position_at(self, instant: str) -> int:
        """The last position recorded at or before ``instant`` (ISO 8601 UTC), 0 if none."""

        def last(conn: sqlite3.Connection) -> int:
            (found,) = conn.execute(
                "SELECT coalesce(max(position), 0) FROM events WHERE recorded_at <= ?", (instant,)
            ).fetchone()
            return int(found)

        return await self.query(last)

    async def read_stream(self, stream: str, *, after_version: int = 0) -> list[Recorded]:
        return await self._read(
            f"{SELECT_EVENTS} WHERE stream = ? AND version > ? ORDER BY version",
            (stream, after_version),
        )

    async def read_by_position(self, positions: Sequence[int]) -> list[Recorded]:
        if not positions:
            return []
        marks = ",".join("?" * len(positions))
        return await self._read(
            f"{SELECT_EVENTS} WHERE position IN ({marks}) ORDER BY position", tuple(positions)
        )

    async def query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read-only ``fn`` on the reader thread; it sees one consistent snapshot.

        For read models kept in the same file. Raises ``StorageError`` if SQLite fails.
        """
        reader = self._reader
        if reader is None:
            raise StoreClosed("the event store is not open")

        def in_snapshot(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        try:
            return await _on_thread(reader, in_snapshot)
        except (sqlite3.Error, ValueError) as exc:
            # aiosqlite says ValueError when the connection closed under this read.
            if self._reader is None:
                raise StoreClosed("the event store closed during the read") from exc
            raise StorageError(f"read failed: {exc}") from exc

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[Recorded]:
        rows = await self.query(lambda conn: conn.execute(sql, params).fetchall())
        return [row_to_record(row) for row in rows]

    async def wait_beyond(self, position: int) -> int:
        while self._head <= position:
            if self._closing:
                raise StoreClosed("the event store is closed")
            await self._advanced.wait()
        return self._head

    async def follow(self, *, after: int = 0, page: int = 1000) -> AsyncIterator[Recorded]:
        if page < 1:
            raise ValueError("page must be at least 1")
        position = after
        while True:
            records = await self.read_all(after=position, limit=page)
            for record in records:
                yield record
                position = record.position
            if len(records) < page:
                await self.wait_beyond(position)


_ENVELOPE = (
    "json_object('position', position, 'stream', stream, 'version', version, 'type', type, "
    "'schema_version', schema_version, 'data', json(data), 'metadata', json(metadata), "
    "'recorded_at', recorded_at)"
)


def _filters(
    after: int,
    streams: Sequence[str] | None,
    types: Sequence[str] | None,
    until: int | None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters shared by the log's readers."""
    where = "position > ?"
    params: list[Any] = [after]
    if until is not None:
        where += " AND position <= ?"
        params.append(until)
    for column, values in (("stream", streams), ("type", types)):
        if values is not None:
            where += f" AND {column} IN ({','.join('?' * len(values))})"
            params.extend(values)
    return where, params


def _read_head(conn: sqlite3.Connection) -> int:
    (head,) = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
    return int(head)


def _insert(conn: sqlite3.Connection, appends: Sequence[StreamAppend], now: str) -> list[Recorded]:
    """Insert every append's events after checking each stream's version."""
    recorded: list[Recorded] = []
    for append in appends:
        (current,) = conn.execute(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (append.stream,)
        ).fetchone()
        if append.expected_version not in (ANY_VERSION, current):
            raise ConcurrencyError(append.stream, append.expected_version, current)
        for offset, event in enumerate(append.events, start=1):
            version = current + offset
            cursor = conn.execute(
                "INSERT INTO events (stream, version, type, schema_version, data, metadata, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    append.stream,
                    version,
                    event.type,
                    event.schema_version,
                    codec.dumps(dict(event.data)),
                    codec.dumps(dict(event.metadata)),
                    now,
                ),
            )
            recorded.append(
                Recorded(
                    position=cast(int, cursor.lastrowid),
                    stream=append.stream,
                    version=version,
                    type=event.type,
                    schema_version=event.schema_version,
                    data=event.data,
                    metadata=event.metadata,
                    recorded_at=now,
                )
            )
        current += len(append.events)
    return recorded


__all__ = ["SELECT_EVENTS", "SQLiteEventStore", "TransactionHook", "row_to_record"]
