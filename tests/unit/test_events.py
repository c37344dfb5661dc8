"""Schema evolution: an old event shape is upcast on read; the log is never rewritten."""

from __future__ import annotations

import pytest

from eventstore.errors import EventDecodeError
from eventstore.events import PayloadReceived, body_digest, decode, upcast
from eventstore.records import Recorded

V1_DATA = {"payload_id": "P1", "account_id": 3, "body": {"b": 2, "a": 1}, "destination_ids": [7]}


def v1_record() -> Recorded:
    return Recorded(
        position=10,
        stream="payload-P1",
        version=1,
        type="PayloadReceived",
        schema_version=1,
        data=V1_DATA,
        metadata={"actor": "account:3"},
        recorded_at="2026-01-01T00:00:00.000000+00:00",
    )


def test_payload_received_v1_is_read_as_v2() -> None:
    """A v1 row decodes to the current model: its digest computed, no idempotency key."""
    event = decode(v1_record())
    assert isinstance(event, PayloadReceived)
    assert event.body == {"b": 2, "a": 1}
    assert event.body_sha256 == body_digest({"a": 1, "b": 2})
    assert event.idempotency_key is None
    assert PayloadReceived.schema_version == 2


def test_upcasting_does_not_touch_the_stored_data() -> None:
    """Upcasting builds new data; the record read from the log is left as it was."""
    record = v1_record()
    upcast(record.type, record.schema_version, record.data)
    assert record.data == V1_DATA
    assert "body_sha256" not in record.data


def test_body_digest_ignores_key_order_and_spacing() -> None:
    """Two bodies with the same content have one digest; different content, another."""
    assert body_digest({"a": 1, "b": [1, 2]}) == body_digest({"b": [1, 2], "a": 1})
    assert body_digest({"a": 1}) != body_digest({"a": 2})


def test_a_version_newer_than_the_code_is_refused() -> None:
    """Data written by a newer release is not decoded as if it were current."""
    with pytest.raises(EventDecodeError):
        upcast("PayloadReceived", 3, V1_DATA)
