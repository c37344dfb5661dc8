"""Errors raised by the event store.

The tree::

    EventStoreError
    ├── ConcurrencyError      a stream was not at the version the caller expected
    ├── AppendRejected        a transaction hook refused the append (an invariant of a read model)
    ├── StoreClosed           the store is not open (not yet started, or shut down)
    └── StorageError          SQLite failed; the original error is the ``__cause__``
    UnknownEventType          a stored ``type`` that the catalogue does not know
    EventDecodeError          stored data that does not fit its type's model

Library errors (``sqlite3.*``, pydantic's ``ValidationError``) never leave this package
untranslated.
"""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every error the store raises."""


class ConcurrencyError(EventStoreError):
    """A stream's version differed from the expected one; decide again on fresh state."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r} is at version {actual}, expected {expected}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class AppendRejected(EventStoreError):
    """A transaction hook refused the append; nothing of it was written.

    Hooks raise subclasses of this to state which invariant failed; the store hands that
    same exception to the caller of ``append`` and to nobody else.
    """


class StoreClosed(EventStoreError):
    """The store is not open."""


class StorageError(EventStoreError):
    """SQLite failed while reading or writing; see ``__cause__``."""


class UnknownEventType(EventStoreError):
    """A record's ``type`` is not in the catalogue."""


class EventDecodeError(EventStoreError):
    """A record's data does not fit the model of its type and schema version."""
