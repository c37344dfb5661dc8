"""Which account a ``CL-X-TOKEN`` opens, and its destinations, kept in memory.

``/api/data/`` needs both on every request; reading them from SQLite costs a hop to the
reader's thread per request, the largest cost of ingestion. Entries are dropped whenever a
commit adds any account or destination event, before that commit's appenders are answered,
so a client that changed a destination and then posts data sees its change. A read that
raced such a commit is returned but not kept. Unknown tokens are never kept, so the memory is
bounded by the live accounts. The decision made on an entry is still checked in the append's
transaction (``DestinationsChanged``), so a stale entry can never fan a payload out wrongly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from eventstore.records import Recorded
from eventstore.sqlite import SQLiteEventStore
from projections import queries as q
from projections.models import AccountView, DestinationView

Entry = tuple[AccountView | None, list[DestinationView]]

_CHANGES = ("Account", "Destination")


class TokenDirectory:
    """Token digest -> (account, its destinations), for the ingestion path."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self.store = store
        self._entries: dict[str, Entry] = {}
        self._generation = 0
        store.add_listener(self._on_commit)

    def _on_commit(self, records: Sequence[Recorded]) -> None:
        if any(record.type.startswith(_CHANGES) for record in records):
            self._entries.clear()
            self._generation += 1

    async def lookup(self, token_digest: str) -> Entry:
        """The live account whose token has this digest (or None) and its destinations."""
        entry = self._entries.get(token_digest)
        if entry is not None:
            return entry
        generation = self._generation

        def read(conn: sqlite3.Connection) -> Entry:
            account = q.account_by_token(conn, token_digest)
            return account, [] if account is None else q.account_destinations(conn, account.id)

        entry = await self.store.query(read)
        if entry[0] is not None and generation == self._generation:
            self._entries[token_digest] = entry
        return entry
