"""The operator's commands on a log file: ``datapusher rebuild`` and ``datapusher events``.

``rebuild`` is offline: it drops every read model, folds the whole log again, and compares
the result with what was there. ``events`` is read-only and may run beside the server: it
prints the log for a person, and with ``--follow`` keeps printing what the server commits.

Exit codes of both: 0 done (and, for ``rebuild``, every table identical); 1 ``rebuild``
found differences (the rebuilt tables are kept) or a command failed part way; 2 the command
refused to start (a usage error: no such file, not a log, file in use); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

from api.progress import ProgressBar
from eventstore.errors import EventStoreError, StorageError
from eventstore.reader import PAGE, LogReader
from eventstore.records import Recorded
from eventstore.sqlite import SQLiteEventStore
from projections.runner import catch_up_page, checkpoints, create_tables, drop_tables
from projections.tables import TABLES

REBUILD_HELP: Final = (
    "Rebuild every read model (accounts, destinations, deliveries, idempotency keys) from the "
    "log and report whether it differs from what was there. Offline: stop the server first "
    "(the command refuses to start while another process has the file open). The rebuilt "
    "tables are kept even when they differ: the log is the truth. Exit status: 0 identical, "
    "1 differences found (or the rebuild failed), 2 usage error."
)
EVENTS_HELP: Final = (
    "Print the log, one line per event: position, time, stream, type, actor, request id, "
    "data. Read-only: it never writes the file and may run while the server is serving. "
    "Account token digests are shortened and credential-like destination headers hidden."
)

POLL_SECONDS: Final = 0.5
DATA_LIMIT: Final = 300
"""Characters of an event's JSON data printed before it is cut with an ellipsis."""
DIGEST_SHOWN: Final = 12
HIDDEN: Final = "<hidden>"
EXAMPLES: Final = 5
_CREDENTIAL_WORDS: Final = (
    "auth",
    "token",
    "secret",
    "passw",
    "key",
    "cookie",
    "signature",
    "session",
    "credential",
)
_BEFORE: Final = "audit_before_"


class AuditRefused(Exception):
    """The command cannot run on this file (missing, not a log, in use); nothing was written."""


# -- rebuild ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableDiff:
    """How one read-model table before the rebuild compares with the rebuilt one.

    ``only_before``: rows that were there and that the log does not give (wrong or extra);
    ``only_rebuilt``: rows the log gives that were missing or different; ``examples``: up
    to five primary keys of such rows; ``columns``: columns that only one of them has.
    """

    table: str
    only_before: int = 0
    only_rebuilt: int = 0
    examples: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return not (self.only_before or self.only_rebuilt or self.columns)

    def describe(self) -> str:
        if self.identical:
            return f"{self.table}: identical"
        text = (
            f"{self.table}: DIFFERENT: {self.only_before} row(s) were there that the log does "
            f"not give, {self.only_rebuilt} row(s) from the log were missing or different"
        )
        if self.columns:
            text += f"; columns in only one of them: {', '.join(self.columns)}"
        if self.examples:
            text += f"; keys: {'; '.join(self.examples)}"
        return text


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What ``rebuild`` did: ``events`` folded in ``seconds``, and each table's comparison.

    ``behind`` names projectors whose checkpoint was behind the log before the rebuild, with
    by how many events (their differences may be only that).
    """

    events: int
    seconds: float
    tables: tuple[TableDiff, ...]
    behind: Mapping[str, int] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return all(diff.identical for diff in self.tables)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def render(self) -> str:
        lines = [
            f"folded {self.events} events in {self.seconds:.3f} s "
            f"({self.events_per_second:.0f} events/s)",
            *(diff.describe() for diff in self.tables),
        ]
        lines.extend(
            f"note: before the rebuild, projector {name} was {count} event(s) behind the log"
            for name, count in sorted(self.behind.items())
        )
        if self.identical:
            lines.append("every read model is identical to the log folded from scratch")
        else:
            lines.append(
                "the read models differed from the log folded from scratch; the rebuilt tables "
                "were kept: they are the log's truth"
            )
        return "\n".join(lines)


async def rebuild(db: Path, *, out: TextIO | None = None) -> RebuildReport:
    """Drop every read model of the log at ``db``, fold the whole log again, and compare.

    Offline: refuses (``AuditRefused``, before writing anything) when the file is missing,
    holds no log, or is open in another process. A server started while it runs is not kept
    out, so stop it first. Draws progress (events folded / log head) on ``out``, standard
    error by default. The rebuilt tables are kept whatever the comparison says. Raises
    ``EventStoreError`` if the rebuild fails part way; the tables are then partly rebuilt
    with consistent checkpoints, and the server's next start catches them up.
    """
    await _check_log(db)
    await asyncio.to_thread(_check_not_in_use, db)
    # NORMAL: the read models are derived, and a rebuild cut short by a crash is only
    # started again; the log itself is not written here.
    async with SQLiteEventStore(db, synchronous="NORMAL") as store:
        behind = await store.run_in_writer(_snapshot)
        bar = ProgressBar(store.head, out or sys.stderr, unit="events")
        started = time.perf_counter()
        await store.run_in_writer(_reset)
        applied = 1
        while applied:
            applied, done = await store.run_in_writer(_fold_page)
            bar.show(done)
        bar.finish()
        seconds = time.perf_counter() - started
        tables = await store.run_in_writer(_compare)
        return RebuildReport(store.head, seconds, tables, behind)


async def _check_log(db: Path) -> None:
    if not await asyncio.to_thread(db.is_file):
        raise AuditRefused(f"{db}: no such file")
    try:
        async with LogReader(db):
            pass
    except StorageError as exc:
        raise AuditRefused(str(exc)) from exc


def _check_not_in_use(db: Path) -> None:
    """Refuse when another connection has the file open.

    In WAL mode every open connection holds a shared lock, so an exclusive lock is granted
    only when nobody else (a server, ``events --follow``) has the file open.
    """
    try:
        conn = sqlite3.connect(
            db.absolute().as_uri() + "?mode=rw", uri=True, timeout=0, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise AuditRefused(f"cannot open {db}: {exc}") from exc
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        if exc.sqlite_errorname == "SQLITE_BUSY":
            raise AuditRefused(
                f"{db} is open in another process (a running server, or `datapusher events "
                "--follow`); rebuild is offline: stop it first"
            ) from exc
        raise AuditRefused(f"cannot lock {db}: {exc}") from exc
    finally:
        conn.close()


def _snapshot(conn: sqlite3.Connection) -> dict[str, int]:
    """Copy every read model into a TEMP table; returns the projectors behind the log."""
    create_tables(conn)
    for table in TABLES:
        conn.execute(f'DROP TABLE IF EXISTS temp."{_BEFORE}{table}"')
        conn.execute(f'CREATE TEMP TABLE "{_BEFORE}{table}" AS SELECT * FROM main."{table}"')
    (head,) = conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
    done = checkpoints(conn)
    return {name: head - position for name, position in done.items() if position < head}


def _reset(conn: sqlite3.Connection) -> None:
    drop_tables(conn)
    create_tables(conn)


REBUILD_PAGE = 5000
"""Events folded per transaction: larger than the server's catch-up pages, as nothing waits."""


def _fold_page(conn: sqlite3.Connection) -> tuple[int, int]:
    """Fold one page into every projector; returns (rows applied, position all have reached)."""
    applied = catch_up_page(conn, REBUILD_PAGE)
    return applied, min(checkpoints(conn).values())


def _compare(conn: sqlite3.Connection) -> tuple[TableDiff, ...]:
    diffs = tuple(_compare_table(conn, table) for table in TABLES)
    for table in TABLES:
        conn.execute(f'DROP TABLE temp."{_BEFORE}{table}"')
    return diffs


def _compare_table(conn: sqlite3.Connection, table: str) -> TableDiff:
    """``EXCEPT`` both ways on the columns both tables have; keys of differing rows."""
    before, rebuilt = f'temp."{_BEFORE}{table}"', f'main."{table}"'
    old_columns = [row[1] for row in conn.execute(f'PRAGMA temp.table_info("{_BEFORE}{table}")')]
    info = list(conn.execute(f'PRAGMA main.table_info("{table}")'))
    new_columns = [row[1] for row in info]
    common = [name for name in new_columns if name in old_columns]
    keys = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5] and row[1] in common]
    keys = keys or common
    listed, key_list = _names(common), _names(keys)
    only_before = f"SELECT {listed} FROM {before} EXCEPT SELECT {listed} FROM {rebuilt}"
    only_rebuilt = f"SELECT {listed} FROM {rebuilt} EXCEPT SELECT {listed} FROM {before}"
    (count_before,) = conn.execute(f"SELECT count(*) FROM ({only_before})").fetchone()
    (count_rebuilt,) = conn.execute(f"SELECT count(*) FROM ({only_rebuilt})").fetchone()
    examples = conn.execute(
        f"SELECT {key_list} FROM ({only_before}) UNION SELECT {key_list} FROM ({only_rebuilt}) "
        f"ORDER BY {', '.join(str(n) for n in range(1, len(keys) + 1))} LIMIT {EXAMPLES}"
    ).fetchall()
    return TableDiff(
        table,
        count_before,
        count_rebuilt,
        tuple(
            _printable(" ".join(f"{k}={v}" for k, v in zip(keys, row, strict=True)))
            for row in examples
        ),
        tuple(sorted(set(old_columns) ^ set(new_columns))),
    )


def _names(columns: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in columns)


def rebuild_command(db: Path, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``datapusher rebuild``: prints the report on ``out``, progress and errors on ``err``."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        report = asyncio.run(rebuild(db, out=err))
    except AuditRefused as exc:
        print(f"datapusher rebuild: {exc}", file=err)
        return 2
    except EventStoreError as exc:
        print(f"datapusher rebuild: failed part way: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print(
            "\ndatapusher rebuild: interrupted; the read models are partly rebuilt (the "
            "server catches them up when it starts, or run rebuild again)",
            file=err,
        )
        return 130
    print(report.render(), file=out)
    return 0 if report.identical else 1


# -- events -------------------------------------------------------------------------------


def describe(record: Recorded) -> str:
    """One line for a person: position, time, stream, type (``/v2`` above version 1), actor,
    request id if any, and the data as compact JSON (cut after ``DATA_LIMIT`` characters).

    Token digests are shortened, credential-like header values hidden, and characters a
    terminal would interpret are escaped.
    """
    kind = record.type
    if record.schema_version > 1:
        kind += f"/v{record.schema_version}"
    fields = [
        f"{record.position:>6}",
        record.recorded_at,
        record.stream,
        kind,
        f"actor={record.metadata.get('actor') or '-'}",
    ]
    if request_id := record.metadata.get("request_id"):
        fields.append(f"request_id={request_id}")
    data = json.dumps(_redact(record.data), separators=(",", ":"), ensure_ascii=False)
    if len(data) > DATA_LIMIT:
        data = data[:DATA_LIMIT] + "…"
    fields.append(data)
    return _printable(" ".join(fields))


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _redact_field(str(key), item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _redact_field(key: str, value: Any) -> Any:
    if key == "token_sha256" and isinstance(value, str):
        return value[:DIGEST_SHOWN] + "…"
    if key == "headers" and isinstance(value, Mapping):
        return {
            name: HIDDEN if _is_credential(str(name)) else _redact(item)
            for name, item in value.items()
        }
    return _redact(value)


def _is_credential(header: str) -> bool:
    lowered = header.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def _printable(text: str) -> str:
    """``text`` with control and formatting characters escaped (no terminal escapes)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )


async def print_events(
    db: Path,
    *,
    out: TextIO,
    after: int = 0,
    types: Sequence[str] = (),
    streams: Sequence[str] = (),
    follow: bool = False,
    stop: asyncio.Event | None = None,
    poll: float = POLL_SECONDS,
) -> int:
    """Print the events of the log at ``db`` after position ``after`` (of ``types`` and
    ``streams`` when given), one ``describe`` line each; returns how many it printed.

    Read-only: see ``eventstore.reader``. With ``follow`` it then prints each new event as
    another process commits it, until ``stop`` is set. A separate process cannot be woken
    by the writer (SQLite has no cross-process notification), so it polls ``PRAGMA
    data_version`` every ``poll`` seconds; a new event shows within about that delay.
    Raises ``AuditRefused`` if the file is missing or holds no log, ``EventStoreError`` if a
    read fails.
    """
    stop = stop or asyncio.Event()
    await _check_log(db)
    reader = LogReader(db)
    await reader.open()
    try:
        version = await reader.data_version()
        cursor, printed = await _print_pages(reader, out, after, types, streams, stop)
        while follow and not await _stopped(stop, poll):
            now = await reader.data_version()
            if now != version:
                version = now
                cursor, count = await _print_pages(reader, out, cursor, types, streams, stop)
                printed += count
        return printed
    finally:
        await reader.close()


async def _print_pages(
    reader: LogReader,
    out: TextIO,
    after: int,
    types: Sequence[str],
    streams: Sequence[str],
    stop: asyncio.Event,
) -> tuple[int, int]:
    """Print every matching event after ``after`` up to the head; returns (cursor, count)."""
    cursor, printed = after, 0
    while not stop.is_set():
        page = await reader.page(after=cursor, limit=PAGE, types=types, streams=streams)
        if page.records:
            out.write("".join(describe(record) + "\n" for record in page.records))
            out.flush()
        cursor, printed = page.cursor, printed + len(page.records)
        if len(page.records) < PAGE:
            break
    return cursor, printed


async def _stopped(stop: asyncio.Event, within: float) -> bool:
    """Wait up to ``within`` seconds for ``stop``; whether it is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await stop.wait()
    return stop.is_set()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT and SIGTERM (main thread only), restoring the handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in signals}
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)


def events_command(
    db: Path,
    *,
    after: int = 0,
    types: Sequence[str] = (),
    streams: Sequence[str] = (),
    follow: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``datapusher events``: the log on ``out``; stops cleanly (0) on Ctrl-C or SIGTERM."""
    out, err = out or sys.stdout, err or sys.stderr
    if isinstance(out, io.TextIOWrapper):
        # A terminal or pipe that cannot encode "…" or a payload's text gets escapes instead.
        out.reconfigure(errors="backslashreplace")

    async def run() -> None:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            await print_events(
                db, out=out, after=after, types=types, streams=streams, follow=follow, stop=stop
            )

    try:
        asyncio.run(run())
    except AuditRefused as exc:
        print(f"datapusher events: {exc}", file=err)
        return 2
    except EventStoreError as exc:
        print(f"datapusher events: {exc}", file=err)
        return 1
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep Python's final flush of
        # standard output from failing again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    return 0
