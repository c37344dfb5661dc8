"""The read models' rows as immutable values: what a query returns and a fold produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from eventstore.events import HttpMethod, Trigger

DeliveryStatus = Literal["pending", "retrying", "delivered", "failed", "skipped"]
OPEN_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "retrying")


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    email: str
    account_name: str
    website: str | None
    token_sha256: str
    created_at: str
    updated_at: str
    version: int
    """The version of the account's stream this view reflects (for optimistic concurrency)."""
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class DestinationView:
    id: int
    account_id: int
    url: str
    http_method: HttpMethod
    headers: Mapping[str, str]
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str
    version: int
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One payload's delivery to one destination."""

    payload_id: str
    destination_id: int
    account_id: int
    payload_position: int
    """Log position of the ``PayloadReceived`` event: where the body is read from."""
    status: DeliveryStatus
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    received_at: str
    updated_at: str
    next_trigger: Trigger = "scheduled"
    """What the next attempt answers: the schedule, or an operator's replay (``manual``)."""
    schedule_base: int = 0
    """Attempts made before the last replay: the retry schedule restarts after them."""
    caused_by: int = 0
    """Log position of what the next attempt answers: the payload, or the replay request."""
