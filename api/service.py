"""Command handling: load state, decide, append; decide again when the state moved meanwhile."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from api.commands import Change
from api.errors import Conflict, Unavailable, ValidationFailed
from eventstore.errors import ConcurrencyError
from eventstore.events import Metadata, encode
from eventstore.records import Recorded, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from projections.errors import (
    AccountHasDestinations,
    AccountNotLive,
    DestinationsChanged,
    DuplicateEmail,
)

S = TypeVar("S")

ATTEMPTS: Final = 10

# Refusals that mean "another write got in between": deciding again on fresh state resolves
# them (a conflict becomes a 404 or a new id; a new destination joins the account's deletion).
_RETRYABLE = (ConcurrencyError, AccountHasDestinations, DestinationsChanged)


class IdSequence:
    """New integer ids, past the highest in the read model and past every id this process
    handed out, so simultaneous creates do not all race for the same id.

    Ids of creations that then fail are skipped, as with a database sequence. The service is
    the log's only writer, so a process-wide sequence suffices; the stream's ``NO_STREAM``
    check still guards against a duplicate.
    """

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def take(self, kind: str, floor: int) -> int:
        """The next id of ``kind``, at least ``floor`` (one past the highest stored)."""
        value = max(floor, self._next.get(kind, 0))
        self._next[kind] = value + 1
        return value


class Commands:
    """Runs decisions against the store with optimistic concurrency."""

    def __init__(self, store: SQLiteEventStore, *, attempts: int = ATTEMPTS) -> None:
        self.store = store
        self.attempts = attempts
        self.ids = IdSequence()

    async def run(
        self,
        load: Callable[[sqlite3.Connection], S],
        decide: Callable[[S], Sequence[Change]],
        metadata: Metadata,
        *,
        known: S | None = None,
    ) -> list[Recorded]:
        """Append what ``decide`` makes of the state ``load`` reads; returns the records.

        ``known`` is state the caller has just read: the first decision uses it instead of
        reading again (one thread hop less on the hot path); a retry always reads afresh.

        Raises the ``ApiError`` that ``decide`` raises, ``Conflict`` for a duplicate email,
        ``ValidationFailed`` when the account a destination names went away, and
        ``Unavailable`` when every attempt lost a race.
        """
        for attempt in range(self.attempts):
            state = known if attempt == 0 and known is not None else await self.store.query(load)
            changes = decide(state)
            if not changes:
                return []
            try:
                return await self.store.append(to_appends(changes, metadata))
            except _RETRYABLE:
                continue
            except DuplicateEmail as exc:
                raise Conflict(str(exc), code="duplicate_email") from exc
            except AccountNotLive as exc:
                raise ValidationFailed(
                    "the request body is not valid",
                    details=[{"field": "account", "message": str(exc), "type": "unknown_account"}],
                ) from exc
        raise Unavailable("the change lost too many races with concurrent changes; try again")


def to_appends(changes: Sequence[Change], metadata: Metadata) -> list[StreamAppend]:
    return [
        StreamAppend(
            change.stream,
            change.expected_version,
            [encode(event, metadata) for event in change.events],
        )
        for change in changes
    ]
