"""``datapusher rebuild`` and ``datapusher events`` on real log files under ``tmp_path``."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import pytest

from api.audit import describe
from api.cli import main
from eventstore.events import (
    AccountCreated,
    AccountUpdated,
    DeliveryAttemptFailed,
    DeliverySucceeded,
    DestinationCreated,
    Event,
    Metadata,
    PayloadReceived,
    encode,
)
from eventstore.records import ANY_VERSION, Recorded, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from projections.runner import Projections
from projections.tables import TABLES

ROOT: Final = Path(__file__).resolve().parents[2]
WAIT: Final = 5.0
"""Seconds within which something that must happen has happened (a hang fails, not a delay)."""
FOLLOW_WAIT: Final = 3.0
"""A few of the follower's 0.5 s polls: a new event must show within about that."""

DIGEST: Final = "0123456789abcdef" * 4
PAYLOAD_ID: Final = "01KAUDITPAYLOAD1"
TYPES: Final = [
    "AccountCreated",
    "AccountCreated",
    "DestinationCreated",
    "PayloadReceived",
    "DeliveryAttemptFailed",
    "DeliverySucceeded",
    "AccountUpdated",
]

ADMIN = Metadata(actor="admin", request_id="req-admin-1")
SYSTEM = Metadata(actor="system", causation=4)


def _attempt(attempt: int) -> dict[str, Any]:
    return {
        "payload_id": PAYLOAD_ID,
        "destination_id": 1,
        "attempt": attempt,
        "duration_ms": 3.5,
        "response_excerpt": "",
        "trigger": "scheduled",
    }


HISTORY: Final[list[tuple[str, Event, Metadata]]] = [
    (
        "account-1",
        AccountCreated(
            account_id=1,
            email="alice@example.com",
            account_name="Alice",
            website=None,
            token_sha256=DIGEST,
        ),
        ADMIN,
    ),
    (
        "account-2",
        AccountCreated(
            account_id=2,
            email="bob@example.com",
            account_name="Bob",
            website=None,
            token_sha256="f" * 64,
        ),
        Metadata(actor="admin"),
    ),
    (
        "destination-1",
        DestinationCreated(
            destination_id=1,
            account_id=1,
            url="https://hooks.example.com/in",
            http_method="POST",
            headers={"Authorization": "Bearer dest-s3cret", "APP_ID": "1234APPID1234"},
        ),
        ADMIN,
    ),
    (
        f"payload-{PAYLOAD_ID}",
        PayloadReceived(
            payload_id=PAYLOAD_ID,
            account_id=1,
            body={"note": "x" * 500},
            destination_ids=[1],
            idempotency_key="order-17",
            body_sha256="b" * 64,
        ),
        Metadata(actor="account:1", request_id="req-data-1"),
    ),
    (
        f"payload-{PAYLOAD_ID}",
        DeliveryAttemptFailed(
            **_attempt(1),
            status_code=503,
            error="http",
            next_attempt_at="2030-01-01T00:00:05+00:00",
        ),
        SYSTEM,
    ),
    (f"payload-{PAYLOAD_ID}", DeliverySucceeded(**_attempt(2), status_code=200), SYSTEM),
    (
        "account-1",
        AccountUpdated(
            account_id=1,
            email="alice@example.com",
            account_name="Alice Smith",
            website="https://alice.example.com",
        ),
        ADMIN,
    ),
]


async def _append(db: Path, history: Sequence[tuple[str, Event, Metadata]]) -> None:
    """Append real events through a store with its projections, as the server does."""
    async with SQLiteEventStore(db) as store:
        await Projections(store).start()
        for stream, event, metadata in history:
            await store.append([StreamAppend(stream, ANY_VERSION, [encode(event, metadata)])])


def _build_log(db: Path) -> None:
    asyncio.run(_append(db, HISTORY))


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as conn:
        contents = {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in TABLES
        }
    conn.close()
    return contents


def _account_name(db: Path, account_id: int) -> str:
    with sqlite3.connect(db) as conn:
        (name,) = conn.execute(
            "SELECT account_name FROM accounts WHERE id = ?", (account_id,)
        ).fetchone()
    conn.close()
    return str(name)


def _tamper(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE accounts SET account_name = 'tampered' WHERE id = 1")
    conn.close()


def _events(capsys: pytest.CaptureFixture[str], db: Path, *flags: str) -> list[str]:
    assert main(["events", "--db", str(db), *flags]) == 0
    return capsys.readouterr().out.splitlines()


def _positions(lines: Sequence[str]) -> list[int]:
    return [int(line.split()[0]) for line in lines]


def _types(lines: Sequence[str]) -> list[str]:
    """The type names, without the ``/vN`` shown for schema versions above 1."""
    return [line.split()[3].split("/")[0] for line in lines]


# -- rebuild ------------------------------------------------------------------------------


def test_rebuild_of_a_consistent_log_reports_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rebuilding a consistent log exits 0, says every table is identical, draws its progress,
    and leaves every table as it was."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)
    before = _tables(db)

    code = main(["rebuild", "--db", str(db)])

    out, err = capsys.readouterr()
    assert code == 0
    assert f"folded {len(HISTORY)} events" in out
    assert "events/s" in out
    for table in TABLES:
        assert f"{table}: identical" in out
    assert f"{len(HISTORY)}/{len(HISTORY)} events" in err
    assert _tables(db) == before
    assert all(before[table] for table in TABLES)


def test_rebuild_reports_and_repairs_a_tampered_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-model row edited behind the log's back is reported for its table only, with its
    key, the command exits 1, and the row is what the log says afterwards."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)
    _tamper(db)

    code = main(["rebuild", "--db", str(db)])

    out = capsys.readouterr().out
    assert code == 1
    [accounts] = [line for line in out.splitlines() if line.startswith("accounts:")]
    assert "DIFFERENT" in accounts
    assert "1 row(s) were there that the log does not give" in accounts
    assert "id=1" in accounts
    for table in TABLES[1:]:
        assert f"{table}: identical" in out
    assert "rebuilt tables were kept" in out
    assert _account_name(db, 1) == "Alice Smith"


def test_rebuild_of_a_missing_file_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rebuild of a path with no file is a usage error (exit 2) and creates no database."""
    db = tmp_path / "missing.sqlite3"

    code = main(["rebuild", "--db", str(db)])

    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_rebuild_refuses_a_file_that_holds_no_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite file without an event log is refused (exit 2) and gets no tables of ours."""
    db = tmp_path / "other.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()

    code = main(["rebuild", "--db", str(db)])

    assert code == 2
    assert "holds no event log" in capsys.readouterr().err
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert names == {"notes"}


def test_rebuild_refuses_while_another_connection_has_the_file_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While someone else (a server) has the file open, rebuild exits 2 and changes nothing."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)
    _tamper(db)
    other = sqlite3.connect(db)
    try:
        other.execute("SELECT count(*) FROM events").fetchone()

        code = main(["rebuild", "--db", str(db)])
    finally:
        other.close()

    assert code == 2
    assert "open in another process" in capsys.readouterr().err
    assert _account_name(db, 1) == "tampered"


# -- events -------------------------------------------------------------------------------


def test_events_prints_one_line_per_event_in_log_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each event is one line: position, time, stream, type, actor, request id, data."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)

    lines = _events(capsys, db)

    assert _positions(lines) == list(range(1, len(HISTORY) + 1))
    assert _types(lines) == TYPES
    first = lines[0].split(maxsplit=6)
    assert first[2:6] == ["account-1", "AccountCreated", "actor=admin", "request_id=req-admin-1"]
    assert first[6].startswith('{"account_id":1,"email":"alice@example.com"')
    assert "request_id" not in lines[1]
    assert " actor=system " in lines[4]


def test_events_filters_by_type_stream_and_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--type, --stream and --after each narrow the output, and they combine."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)

    assert _positions(_events(capsys, db, "--type", "AccountCreated")) == [1, 2]
    assert _positions(_events(capsys, db, "--stream", "account-1")) == [1, 7]
    assert _positions(_events(capsys, db, "--after", "4")) == [5, 6, 7]
    payload = _events(capsys, db, "--stream", f"payload-{PAYLOAD_ID}", "--after", "4")
    assert _positions(payload) == [5, 6]
    both = _events(capsys, db, "--type", "AccountUpdated", "--type", "DestinationCreated")
    assert _types(both) == ["DestinationCreated", "AccountUpdated"]
    assert _events(capsys, db, "--after", "7") == []


def test_events_shortens_digests_hides_credentials_and_cuts_long_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Token digests show 12 characters, credential headers are hidden, long data is cut."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)

    lines = _events(capsys, db)
    text = "\n".join(lines)

    assert DIGEST not in text
    assert f'"token_sha256":"{DIGEST[:12]}…"' in lines[0]
    assert "dest-s3cret" not in text
    assert '"Authorization":"<hidden>"' in lines[2]
    assert '"APP_ID":"1234APPID1234"' in lines[2]
    payload = lines[3]
    assert payload.endswith("…")
    assert len(payload.split(maxsplit=6)[6]) == 301


def test_events_never_writes_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Printing the log (filtered or not) leaves the database file's bytes and mtime as they
    were."""
    db = tmp_path / "log.sqlite3"
    _build_log(db)
    content, mtime = db.read_bytes(), db.stat().st_mtime_ns

    _events(capsys, db)
    _events(capsys, db, "--type", "AccountCreated", "--after", "1")

    assert db.read_bytes() == content
    assert db.stat().st_mtime_ns == mtime


def test_events_of_a_missing_file_exits_2_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The events command on a path with no file is a usage error and creates nothing."""
    code = main(["events", "--db", str(tmp_path / "missing.sqlite3")])

    assert code == 2
    assert "no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


async def test_events_reads_while_a_store_is_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a store open on the file (as a running server has it), events prints every
    committed event."""
    db = tmp_path / "log.sqlite3"
    async with SQLiteEventStore(db) as store:
        await Projections(store).start()
        for stream, event, metadata in HISTORY[:3]:
            await store.append([StreamAppend(stream, ANY_VERSION, [encode(event, metadata)])])

        code = await asyncio.to_thread(main, ["events", "--db", str(db)])

        assert code == 0
        assert _types(capsys.readouterr().out.splitlines()) == TYPES[:3]


def test_describe_marks_newer_schema_versions_and_escapes_control_characters() -> None:
    """A schema version above 1 is shown after the type; terminal control characters never
    reach the terminal."""
    record = Recorded(
        position=42,
        stream="account-\x1b[2J9",
        version=3,
        type="AccountRenamed",
        schema_version=2,
        data={"name": "\x1b]0;owned\x07", "bidi": "\u202e"},
        metadata={"actor": "admin"},
        recorded_at="2030-01-01T00:00:00.000000+00:00",
    )

    line = describe(record)

    assert line.split()[:5] == [
        "42",
        "2030-01-01T00:00:00.000000+00:00",
        "account-\\x1b[2J9",
        "AccountRenamed/v2",
        "actor=admin",
    ]
    assert line.isprintable()
    assert "\\u202e" in line


async def _read_line(stream: asyncio.StreamReader) -> str:
    async with asyncio.timeout(WAIT):
        return (await stream.readline()).decode()


async def test_events_follow_prints_new_events_from_another_process_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """``events --follow`` in its own process prints an event another process appends, within
    a couple of polls, and exits 0 on SIGTERM."""
    db = tmp_path / "log.sqlite3"
    await _append(db, HISTORY)
    follower = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "api.cli",
        "events",
        "--db",
        str(db),
        "--follow",
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert follower.stdout is not None
    assert follower.stderr is not None
    try:
        first = [await _read_line(follower.stdout) for _ in HISTORY]
        assert _positions(first) == list(range(1, len(HISTORY) + 1))
        late = AccountCreated(
            account_id=3,
            email="carol@example.com",
            account_name="Carol",
            website=None,
            token_sha256="c" * 64,
        )

        await _append(db, [("account-3", late, ADMIN)])

        async with asyncio.timeout(FOLLOW_WAIT):
            line = await follower.stdout.readline()
        assert line.decode().split()[0] == str(len(HISTORY) + 1)
        assert "carol@example.com" in line.decode()
        follower.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            code = await follower.wait()
        assert code == 0
        assert await follower.stderr.read() == b""
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
