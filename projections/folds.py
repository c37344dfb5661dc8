"""Pure folds: how each event changes a read model's row. No I/O, no clock, no ids.

The SQLite tables (``projections.tables``) and the in-memory ``ReadModel`` below both change
only through these functions, so folding the whole log in memory must give exactly the rows
the live tables hold (a property the tests check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from eventstore.events import (
    AccountCreated,
    AccountDeleted,
    AccountTokenRotated,
    AccountUpdated,
    DeliveryAttemptFailed,
    DeliveryFailed,
    DeliveryReplayRequested,
    DeliverySucceeded,
    DestinationCreated,
    DestinationDeleted,
    DestinationDisabled,
    DestinationEnabled,
    DestinationUpdated,
    Event,
    PayloadReceived,
    decode,
)
from eventstore.records import Recorded
from projections.errors import ProjectionError
from projections.models import OPEN_STATUSES, AccountView, DeliveryView, DestinationView

AccountEvent = AccountCreated | AccountUpdated | AccountTokenRotated | AccountDeleted
DestinationEvent = (
    DestinationCreated
    | DestinationUpdated
    | DestinationDisabled
    | DestinationEnabled
    | DestinationDeleted
)
AttemptEvent = DeliverySucceeded | DeliveryAttemptFailed | DeliveryFailed


@dataclass(frozen=True, slots=True)
class Stamp:
    """Where and when an event was recorded: its position, stream version and time."""

    position: int
    version: int
    at: str

    @classmethod
    def of(cls, record: Recorded) -> Stamp:
        return cls(record.position, record.version, record.recorded_at)


def evolve_account(view: AccountView | None, event: AccountEvent, stamp: Stamp) -> AccountView:
    """The account after ``event``; raises ``ProjectionError`` for an event on a missing one."""
    if isinstance(event, AccountCreated):
        return AccountView(
            id=event.account_id,
            email=event.email,
            account_name=event.account_name,
            website=event.website,
            token_sha256=event.token_sha256,
            created_at=stamp.at,
            updated_at=stamp.at,
            version=stamp.version,
        )
    if view is None:
        raise ProjectionError(f"{event.type} for unknown account {event.account_id}")
    view = replace(view, updated_at=stamp.at, version=stamp.version)
    if isinstance(event, AccountUpdated):
        return replace(
            view, email=event.email, account_name=event.account_name, website=event.website
        )
    if isinstance(event, AccountTokenRotated):
        return replace(view, token_sha256=event.token_sha256)
    return replace(view, deleted=True)


def evolve_destination(
    view: DestinationView | None, event: DestinationEvent, stamp: Stamp
) -> DestinationView:
    """The destination after ``event``; raises ``ProjectionError`` for a missing one."""
    if isinstance(event, DestinationCreated):
        return DestinationView(
            id=event.destination_id,
            account_id=event.account_id,
            url=event.url,
            http_method=event.http_method,
            headers=dict(event.headers),
            enabled=True,
            disabled_reason=None,
            created_at=stamp.at,
            updated_at=stamp.at,
            version=stamp.version,
        )
    if view is None:
        raise ProjectionError(f"{event.type} for unknown destination {event.destination_id}")
    view = replace(view, updated_at=stamp.at, version=stamp.version)
    if isinstance(event, DestinationUpdated):
        return replace(
            view,
            account_id=event.account_id,
            url=event.url,
            http_method=event.http_method,
            headers=dict(event.headers),
        )
    if isinstance(event, DestinationDisabled):
        return replace(view, enabled=False, disabled_reason=event.reason)
    if isinstance(event, DestinationEnabled):
        return replace(view, enabled=True, disabled_reason=None)
    return replace(view, deleted=True)


def deliveries_of(event: PayloadReceived, stamp: Stamp) -> list[DeliveryView]:
    """One pending delivery per destination the payload fans out to, due at once."""
    return [
        DeliveryView(
            payload_id=event.payload_id,
            destination_id=destination_id,
            account_id=event.account_id,
            payload_position=stamp.position,
            status="pending",
            attempts=0,
            next_attempt_at=stamp.at,
            last_status_code=None,
            last_error=None,
            received_at=stamp.at,
            updated_at=stamp.at,
            caused_by=stamp.position,
        )
        for destination_id in event.destination_ids
    ]


def evolve_delivery(view: DeliveryView, event: AttemptEvent, stamp: Stamp) -> DeliveryView:
    """The delivery after one attempt's outcome."""
    status = view.status
    next_attempt_at: str | None = None
    next_trigger = view.next_trigger
    error: str | None = None
    if isinstance(event, DeliverySucceeded):
        status = "delivered"
    elif status == "skipped":
        # The destination went away while this attempt was in flight: no retry follows.
        error = event.error
    elif isinstance(event, DeliveryAttemptFailed):
        status, next_attempt_at, next_trigger = "retrying", event.next_attempt_at, "scheduled"
        error = event.error
    else:
        status, error = "failed", event.error
    # One replace() for the whole change: it is the fold's hottest line during a rebuild.
    return replace(
        view,
        status=status,
        attempts=max(view.attempts, event.attempt),
        next_attempt_at=next_attempt_at,
        last_status_code=event.status_code,
        last_error=error,
        updated_at=stamp.at,
        next_trigger=next_trigger,
    )


def replay_delivery(view: DeliveryView, stamp: Stamp) -> DeliveryView:
    """A replayed delivery is due again at once with a fresh retry schedule; its attempt
    numbers continue."""
    return replace(
        view,
        status="pending",
        next_attempt_at=stamp.at,
        updated_at=stamp.at,
        next_trigger="manual",
        schedule_base=view.attempts,
        caused_by=stamp.position,
    )


def skip_delivery(view: DeliveryView, stamp: Stamp) -> DeliveryView:
    """An open delivery whose destination was disabled or deleted is not tried (any more)."""
    if view.status not in OPEN_STATUSES:
        return view
    return replace(view, status="skipped", next_attempt_at=None, updated_at=stamp.at)


@dataclass(slots=True)
class ReadModel:
    """Every read model in memory; the reference the SQLite tables must equal."""

    accounts: dict[int, AccountView] = field(default_factory=dict)
    destinations: dict[int, DestinationView] = field(default_factory=dict)
    deliveries: dict[tuple[str, int], DeliveryView] = field(default_factory=dict)

    def apply(self, event: Event, stamp: Stamp) -> None:
        """Fold one event into the model."""
        if isinstance(event, AccountEvent):
            self.accounts[event.account_id] = evolve_account(
                self.accounts.get(event.account_id), event, stamp
            )
        elif isinstance(event, DestinationEvent):
            destination_id = event.destination_id
            self.destinations[destination_id] = evolve_destination(
                self.destinations.get(destination_id), event, stamp
            )
            if isinstance(event, DestinationDisabled | DestinationDeleted):
                self._skip_open(destination_id, stamp)
        elif isinstance(event, PayloadReceived):
            for view in deliveries_of(event, stamp):
                self.deliveries[(view.payload_id, view.destination_id)] = view
        elif isinstance(event, DeliveryReplayRequested):
            for destination_id in event.destination_ids:
                key = (event.payload_id, destination_id)
                self.deliveries[key] = replay_delivery(self.deliveries[key], stamp)
        else:
            key = (event.payload_id, event.destination_id)
            self.deliveries[key] = evolve_delivery(self.deliveries[key], event, stamp)

    def _skip_open(self, destination_id: int, stamp: Stamp) -> None:
        for key, view in self.deliveries.items():
            if view.destination_id == destination_id:
                self.deliveries[key] = skip_delivery(view, stamp)


def fold(records: Iterable[Recorded]) -> ReadModel:
    """The read models as of the last of ``records`` (which must start at the log's start)."""
    model = ReadModel()
    for record in records:
        model.apply(decode(record), Stamp.of(record))
    return model
