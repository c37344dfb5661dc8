"""A read-only view of the log in one SQLite file, for tools that run beside the server.

The file is opened through a read-only URI (``file:PATH?mode=ro``) with ``query_only`` on:
no migration, no pragma that writes, no checkpoint. It never creates the file, and it can
read while another process (the server) is appending: in WAL mode a reader sees every
transaction committed before its statement started. The database file itself is never
written; SQLite may leave the empty ``-wal`` and ``-shm`` side files it needs for reading.

Positions are gap-free for committed events and committed in order (one writer), so once
``max(position)`` is ``H``, every event up to ``H`` is there and will never change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiosqlite

from eventstore.errors import EventDecodeError, StorageError, StoreClosed
from eventstore.records import Recorded
from eventstore.sqlite import SELECT_EVENTS, row_to_record

PAGE: Final = 1000


@dataclass(frozen=True, slots=True)
class LogPage:
    """Events read in one call, and where the next call should start.

    ``cursor`` is the last position this page accounts for: the last record's position when
    the page is full, otherwise the head at the time of the read (every matching event up to
    it was returned), and never less than the ``after`` it was asked for.
    """

    records: list[Recorded]
    cursor: int
    head: int


class LogReader:
    """Reads one log file through a read-only connection; ``open`` and ``close`` it, or use
    ``async with``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> LogReader:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect read-only; raises ``StorageError`` if the file is missing or holds no log."""
        uri = self.path.absolute().as_uri() + "?mode=ro"
        try:
            self._conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await self._conn.execute("PRAGMA query_only=ON")
            await self._conn.execute("PRAGMA busy_timeout=5000")
            found = await self._scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            )
        except sqlite3.Error as exc:
            await self.close()
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        if not found:
            await self.close()
            raise StorageError(f"{self.path} holds no event log")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file.

        Cheap to poll: it reads no table.
        """
        return await self._read_scalar("PRAGMA data_version")

    async def head(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        return await self._read_scalar("SELECT coalesce(max(position), 0) FROM events")

    async def page(
        self,
        *,
        after: int = 0,
        limit: int = PAGE,
        types: Sequence[str] = (),
        streams: Sequence[str] = (),
    ) -> LogPage:
        """Up to ``limit`` events after ``after`` in log order, of ``types`` and ``streams``
        when given (each empty means any).

        Raises ``StorageError`` if SQLite fails, ``EventDecodeError`` if a row is not JSON.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        head = await self.head()
        where = ["position > ?", "position <= ?"]
        params: list[Any] = [after, head]
        for column, values in (("type", types), ("stream", streams)):
            if values:
                where.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        sql = f"{SELECT_EVENTS} WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        rows = await self._fetchall(sql, (*params, limit))
        records = [_record(row) for row in rows]
        cursor = records[-1].position if len(records) == limit else max(after, head)
        return LogPage(records, cursor, head)

    async def _read_scalar(self, sql: str) -> int:
        try:
            return await self._scalar(sql)
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    async def _scalar(self, sql: str) -> int:
        rows = await self._connection().execute_fetchall(sql)
        return int(next(iter(rows))[0])

    async def _fetchall(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        try:
            return list(await self._connection().execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}") from exc

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreClosed("the log reader is not open")
        return self._conn


def _record(row: Sequence[Any]) -> Recorded:
    try:
        return row_to_record(row)
    except ValueError as exc:
        raise EventDecodeError(f"event at position {row[0]} is not JSON: {exc}") from exc


__all__ = ["LogPage", "LogReader"]
