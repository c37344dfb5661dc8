"""The pure decisions behind each command."""

from __future__ import annotations

import pytest

from api import commands as cmd
from api.errors import NotFound, ValidationFailed
from eventstore.events import (
    AccountDeleted,
    AccountUpdated,
    DestinationDeleted,
    DestinationDisabled,
    PayloadReceived,
)
from eventstore.records import NO_STREAM
from projections.models import AccountView, DestinationView

ACCOUNT = AccountView(
    id=4,
    email="a@example.com",
    account_name="A",
    website=None,
    token_sha256="0" * 64,
    created_at="t",
    updated_at="t",
    version=3,
)


def destination(destination_id: int, *, enabled: bool = True) -> DestinationView:
    return DestinationView(
        id=destination_id,
        account_id=4,
        url="https://x/",
        http_method="POST",
        headers={},
        enabled=enabled,
        disabled_reason=None if enabled else "manual",
        created_at="t",
        updated_at="t",
        version=2,
    )


def test_create_account_starts_a_new_stream_with_the_given_id() -> None:
    """Creation expects no stream yet, so a concurrent create of the same id conflicts."""
    fields = cmd.AccountFields("a@example.com", "A", None)
    [change] = cmd.decide_create_account(fields, account_id=9, token_sha256="f" * 64)
    assert (change.stream, change.expected_version) == ("account-9", NO_STREAM)
    assert change.events[0].model_dump()["token_sha256"] == "f" * 64


def test_update_with_no_change_records_nothing() -> None:
    """A PUT that repeats the current fields appends no event."""
    fields = cmd.AccountFields("a@example.com", "A", None)
    assert cmd.decide_update_account(ACCOUNT, 4, fields) == []


def test_update_is_decided_on_the_version_read() -> None:
    """The change names the version it was decided on (optimistic concurrency)."""
    fields = cmd.AccountFields("b@example.com", "A", None)
    [change] = cmd.decide_update_account(ACCOUNT, 4, fields)
    assert change.expected_version == 3
    assert isinstance(change.events[0], AccountUpdated)


def test_commands_on_a_missing_entity_are_not_found() -> None:
    """An unknown id in the path is a 404, whatever the command."""
    with pytest.raises(NotFound):
        cmd.decide_rotate_token(None, 4, token_sha256="0" * 64)
    with pytest.raises(NotFound):
        cmd.decide_delete_destination(None, 5)


def test_delete_account_deletes_every_destination_first_in_one_decision() -> None:
    """One atomic decision: each destination's deletion, then the account's."""
    changes = cmd.decide_delete_account(ACCOUNT, 4, [destination(1), destination(2)])
    kinds = [type(change.events[0]) for change in changes]
    assert kinds == [DestinationDeleted, DestinationDeleted, AccountDeleted]
    assert [c.stream for c in changes] == ["destination-1", "destination-2", "account-4"]


def test_destination_for_a_missing_account_is_a_validation_error() -> None:
    """An unknown account id in a body is a 400 with a detail on the account field."""
    fields = cmd.DestinationFields(99, "https://x/", "POST", {})
    with pytest.raises(ValidationFailed) as raised:
        cmd.decide_create_destination(None, fields, destination_id=1)
    assert raised.value.details[0]["field"] == "account"


def test_disabling_twice_records_once() -> None:
    """Disabling a disabled destination is a no-op; disabling an enabled one is recorded."""
    assert cmd.decide_set_enabled(destination(1, enabled=False), 1, enabled=False) == []
    [change] = cmd.decide_set_enabled(destination(1), 1, enabled=False)
    assert isinstance(change.events[0], DestinationDisabled)


def test_payload_fans_out_to_enabled_destinations_only() -> None:
    """A disabled destination is left out of the payload's destination_ids."""
    [change] = cmd.decide_receive_payload(
        ACCOUNT,
        [destination(1), destination(2, enabled=False)],
        {"k": 1},
        payload_id="P",
        body_sha256="0" * 64,
    )
    event = change.events[0]
    assert isinstance(event, PayloadReceived)
    assert event.destination_ids == [1]
    assert (change.stream, change.expected_version) == ("payload-P", NO_STREAM)
