"""The store's interface: what every backend of the log guarantees.

The contract suite in ``tests/integration/test_store_contract.py`` pins these guarantees;
a later backend must pass it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from eventstore.records import Recorded, StreamAppend


class EventStore(Protocol):
    """An append-only, totally ordered log of events grouped in streams."""

    @property
    def head(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        ...

    async def append(self, appends: Sequence[StreamAppend]) -> list[Recorded]:
        """Append events to one or more streams atomically; all or nothing.

        Returns the recorded events in log order, once they are durably committed.
        Raises ``ConcurrencyError`` if a stream is not at its expected version,
        ``AppendRejected`` if a transaction hook refuses it, ``StoreClosed`` if the store is
        not open, ``StorageError`` if SQLite fails. A failure affects only this caller.
        """
        ...

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        until: int | None = None,
    ) -> list[Recorded]:
        """Up to ``limit`` events with position greater than ``after`` (and at most ``until``),
        in log order; only of the given streams and types when those are given."""
        ...

    async def read_envelopes(
        self,
        *,
        after: int = 0,
        limit: int = 1000,
        streams: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
    ) -> list[tuple[int, str]]:
        """What ``read_all`` reads, as ``(position, envelope JSON text)`` pairs."""
        ...

    async def position_at(self, instant: str) -> int:
        """The last position recorded at or before ``instant`` (ISO 8601 UTC), 0 if none."""
        ...

    async def read_stream(self, stream: str, *, after_version: int = 0) -> list[Recorded]:
        """The events of one stream with version greater than ``after_version``, in order."""
        ...

    async def read_by_position(self, positions: Sequence[int]) -> list[Recorded]:
        """The events at the given positions (missing ones are left out), in log order."""
        ...

    async def wait_beyond(self, position: int) -> int:
        """Wait until the head passes ``position``; returns the head.

        Bound the wait with ``asyncio.timeout`` where it must end.
        """
        ...

    def follow(self, *, after: int = 0, page: int = 1000) -> AsyncIterator[Recorded]:
        """Every event after ``after``, then each new one as it is committed, forever."""
        ...
