"""Fixtures for the integration tests: real stores on real files under ``tmp_path``.

Every backend of the log is listed in ``BACKENDS``; ``make_store`` is parametrized over it, so
each test that asks for ``store`` runs once per backend, unchanged. Tests of a guarantee that
only SQLite gives (SQL-level triggers, transaction hooks) ask for ``sqlite_store`` instead,
which skips on other backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

import pytest

from eventstore.sqlite import SQLiteEventStore
from eventstore.store import EventStore


class ManagedStore(EventStore, Protocol):
    """A backend as the tests drive it: the store's contract plus its lifecycle."""

    async def open(self) -> None:
        """Connect and start accepting work."""
        ...

    async def close(self) -> None:
        """Finish queued work and stop; closing a closed store does nothing."""
        ...


StoreFactory = Callable[[], ManagedStore]
"""Builds a new, unopened store on the test's own location (the same one on every call)."""


def _sqlite(directory: Path) -> ManagedStore:
    return SQLiteEventStore(directory / "log.sqlite3")


BACKENDS: dict[str, Callable[[Path], ManagedStore]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of unopened stores of one backend, all on this test's location."""
    build = BACKENDS[request.param]
    return lambda: build(tmp_path)


@pytest.fixture
async def store(make_store: StoreFactory) -> AsyncIterator[ManagedStore]:
    """An opened store on a fresh location, closed after the test."""
    opened = make_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def sqlite_store(store: ManagedStore) -> SQLiteEventStore:
    """The ``store`` when it is the SQLite backend; the test is skipped for other backends."""
    if not isinstance(store, SQLiteEventStore):
        pytest.skip("a guarantee of the SQLite backend only")
    return store
