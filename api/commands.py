"""Commands and the pure functions that decide them.

``decide_*(state, command, *, new_id...) -> list[Change]``: no I/O, no clock, no ids made here.
A decision names the stream and the version it was decided on, so the append fails with a
``ConcurrencyError`` if the stream moved meanwhile, and the handler decides again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from api.errors import NotFound, ValidationFailed
from eventstore.events import (
    AccountCreated,
    AccountDeleted,
    AccountTokenRotated,
    AccountUpdated,
    DeliveryReplayRequested,
    DestinationCreated,
    DestinationDeleted,
    DestinationDisabled,
    DestinationEnabled,
    DestinationUpdated,
    Event,
    HttpMethod,
    PayloadReceived,
    account_stream,
    destination_stream,
    payload_stream,
)
from eventstore.records import ANY_VERSION, NO_STREAM
from projections.models import AccountView, DeliveryView, DestinationView

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Change:
    """Events for one stream, decided on the stream at ``expected_version``."""

    stream: str
    expected_version: int
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class AccountFields:
    email: str
    account_name: str
    website: str | None


@dataclass(frozen=True, slots=True)
class DestinationFields:
    account_id: int
    url: str
    http_method: HttpMethod
    headers: dict[str, str] = field(default_factory=dict)


def _found(view: T | None, what: str, ident: object) -> T:
    if view is None:
        raise NotFound(f"{what} {ident} not found")
    return view


def decide_create_account(
    fields: AccountFields, *, account_id: int, token_sha256: str
) -> list[Change]:
    event = AccountCreated(
        account_id=account_id,
        email=fields.email,
        account_name=fields.account_name,
        website=fields.website,
        token_sha256=token_sha256,
    )
    return [Change(account_stream(account_id), NO_STREAM, [event])]


def decide_update_account(
    account: AccountView | None, account_id: int, fields: AccountFields
) -> list[Change]:
    """Nothing is recorded when nothing changes."""
    view = _found(account, "account", account_id)
    if (view.email, view.account_name, view.website) == (
        fields.email,
        fields.account_name,
        fields.website,
    ):
        return []
    event = AccountUpdated(
        account_id=view.id,
        email=fields.email,
        account_name=fields.account_name,
        website=fields.website,
    )
    return [Change(account_stream(view.id), view.version, [event])]


def decide_rotate_token(
    account: AccountView | None, account_id: int, *, token_sha256: str
) -> list[Change]:
    view = _found(account, "account", account_id)
    event = AccountTokenRotated(account_id=view.id, token_sha256=token_sha256)
    return [Change(account_stream(view.id), view.version, [event])]


def decide_delete_account(
    account: AccountView | None, account_id: int, destinations: Sequence[DestinationView]
) -> list[Change]:
    """Every destination of the account is deleted first, in the same atomic append."""
    view = _found(account, "account", account_id)
    changes = [
        Change(
            destination_stream(d.id),
            d.version,
            [DestinationDeleted(destination_id=d.id, account_id=view.id)],
        )
        for d in destinations
    ]
    changes.append(
        Change(account_stream(view.id), view.version, [AccountDeleted(account_id=view.id)])
    )
    return changes


def _require_account(account: AccountView | None, account_id: int) -> None:
    if account is None:
        raise ValidationFailed(
            "the request body is not valid",
            details=[
                {
                    "field": "account",
                    "message": f"account {account_id} does not exist",
                    "type": "unknown_account",
                }
            ],
        )


def decide_create_destination(
    account: AccountView | None, fields: DestinationFields, *, destination_id: int
) -> list[Change]:
    _require_account(account, fields.account_id)
    event = DestinationCreated(
        destination_id=destination_id,
        account_id=fields.account_id,
        url=fields.url,
        http_method=fields.http_method,
        headers=fields.headers,
    )
    return [Change(destination_stream(destination_id), NO_STREAM, [event])]


def decide_update_destination(
    destination: DestinationView | None,
    destination_id: int,
    account: AccountView | None,
    fields: DestinationFields,
) -> list[Change]:
    """``account`` is the (new) owner named in ``fields``; nothing is recorded for no change."""
    view = _found(destination, "destination", destination_id)
    _require_account(account, fields.account_id)
    before = (view.account_id, view.url, view.http_method, dict(view.headers))
    if before == (fields.account_id, fields.url, fields.http_method, fields.headers):
        return []
    event = DestinationUpdated(
        destination_id=view.id,
        account_id=fields.account_id,
        url=fields.url,
        http_method=fields.http_method,
        headers=fields.headers,
    )
    return [Change(destination_stream(view.id), view.version, [event])]


def decide_delete_destination(
    destination: DestinationView | None, destination_id: int
) -> list[Change]:
    view = _found(destination, "destination", destination_id)
    event = DestinationDeleted(destination_id=view.id, account_id=view.account_id)
    return [Change(destination_stream(view.id), view.version, [event])]


def decide_set_enabled(
    destination: DestinationView | None, destination_id: int, *, enabled: bool
) -> list[Change]:
    """Enabling an enabled destination (or disabling a disabled one) records nothing."""
    view = _found(destination, "destination", destination_id)
    if view.enabled == enabled:
        return []
    event: Event = (
        DestinationEnabled(destination_id=view.id)
        if enabled
        else DestinationDisabled(destination_id=view.id, reason="manual")
    )
    return [Change(destination_stream(view.id), view.version, [event])]


def decide_receive_payload(
    account: AccountView,
    destinations: Sequence[DestinationView],
    body: dict[str, object],
    *,
    payload_id: str,
    body_sha256: str,
    idempotency_key: str | None = None,
) -> list[Change]:
    """The payload fans out to the account's enabled destinations, fixed now."""
    event = PayloadReceived(
        payload_id=payload_id,
        account_id=account.id,
        body=body,
        destination_ids=[d.id for d in destinations if d.enabled],
        idempotency_key=idempotency_key,
        body_sha256=body_sha256,
    )
    return [Change(payload_stream(payload_id), NO_STREAM, [event])]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay appends, and what it leaves out and why."""

    changes: list[Change]
    replayed: int
    skipped: list[dict[str, object]]


def decide_replay(
    deliveries: Sequence[DeliveryView], destinations: Mapping[int, DestinationView | None]
) -> ReplayPlan:
    """Deliver again to current, enabled destinations; one event per payload.

    A deleted or disabled destination is skipped, and so is a delivery still pending (it is
    about to be attempted anyway). A retrying or finished delivery is due again at once with
    a fresh retry schedule.
    """
    targets: dict[str, list[int]] = {}
    skipped: list[dict[str, object]] = []
    for delivery in deliveries:
        destination = destinations.get(delivery.destination_id)
        reason = (
            "destination_deleted"
            if destination is None
            else "destination_disabled"
            if not destination.enabled
            else "already_pending"
            if delivery.status == "pending"
            else None
        )
        if reason is None:
            targets.setdefault(delivery.payload_id, []).append(delivery.destination_id)
        else:
            skipped.append(
                {
                    "payload_id": delivery.payload_id,
                    "destination_id": delivery.destination_id,
                    "reason": reason,
                }
            )
    changes = [
        Change(
            payload_stream(payload_id),
            ANY_VERSION,
            [DeliveryReplayRequested(payload_id=payload_id, destination_ids=ids)],
        )
        for payload_id, ids in targets.items()
    ]
    return ReplayPlan(changes, sum(len(ids) for ids in targets.values()), skipped)
