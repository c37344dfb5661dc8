"""The catalogue of event types: the names and shapes are part of the contract.

Each event is a frozen pydantic model with a stable ``type`` string (never an import path)
and a ``schema_version``. The log stores ``type``, ``schema_version`` and the other fields as
JSON; ``decode`` upcasts an old shape to the current one before validating it, so the log is
never rewritten.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from eventstore.errors import EventDecodeError, UnknownEventType
from eventstore.records import NewEvent, Recorded

HttpMethod = Literal["GET", "POST", "PUT"]
ErrorClass = Literal["timeout", "connect", "dns", "tls", "http", "blocked"]
Trigger = Literal["scheduled", "manual", "recover"]


def account_stream(account_id: int) -> str:
    return f"account-{account_id}"


def destination_stream(destination_id: int) -> str:
    return f"destination-{destination_id}"


def payload_stream(payload_id: str) -> str:
    return f"payload-{payload_id}"


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who caused an event and why: ``actor`` is ``admin``, ``account:<id>`` or ``system``."""

    actor: str
    request_id: str | None = None
    causation: int | None = None
    """The log position of the event this one answers (a delivery outcome's payload)."""

    def as_dict(self) -> dict[str, Any]:
        return {"actor": self.actor, "request_id": self.request_id, "causation": self.causation}


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: ClassVar[int] = 1


class AccountCreated(_Event):
    type: Literal["AccountCreated"] = "AccountCreated"
    account_id: int
    email: str
    account_name: str
    website: str | None
    token_sha256: str


class AccountUpdated(_Event):
    """The account's fields after the change (all of them, not only the changed ones)."""

    type: Literal["AccountUpdated"] = "AccountUpdated"
    account_id: int
    email: str
    account_name: str
    website: str | None


class AccountTokenRotated(_Event):
    type: Literal["AccountTokenRotated"] = "AccountTokenRotated"
    account_id: int
    token_sha256: str


class AccountDeleted(_Event):
    type: Literal["AccountDeleted"] = "AccountDeleted"
    account_id: int


class DestinationCreated(_Event):
    type: Literal["DestinationCreated"] = "DestinationCreated"
    destination_id: int
    account_id: int
    url: str
    http_method: HttpMethod
    headers: dict[str, str]


class DestinationUpdated(_Event):
    """The destination's fields after the change (all of them)."""

    type: Literal["DestinationUpdated"] = "DestinationUpdated"
    destination_id: int
    account_id: int
    url: str
    http_method: HttpMethod
    headers: dict[str, str]


class DestinationDisabled(_Event):
    type: Literal["DestinationDisabled"] = "DestinationDisabled"
    destination_id: int
    reason: Literal["manual", "gone"]


class DestinationEnabled(_Event):
    type: Literal["DestinationEnabled"] = "DestinationEnabled"
    destination_id: int


class DestinationDeleted(_Event):
    type: Literal["DestinationDeleted"] = "DestinationDeleted"
    destination_id: int
    account_id: int


class PayloadReceived(_Event):
    """A client's JSON object, and the destinations it fans out to, fixed at receipt.

    v2 added ``body_sha256`` (the SHA-256 of the body's canonical JSON: auditors can check a
    body against it, and an ``Idempotency-Key`` repeat is told from a reused key by it) and
    ``idempotency_key``; ``upcast_payload_received_v1`` fills both in for v1 rows.
    """

    schema_version: ClassVar[int] = 2
    type: Literal["PayloadReceived"] = "PayloadReceived"
    payload_id: str
    account_id: int
    body: dict[str, Any]
    destination_ids: list[int]
    body_sha256: str
    idempotency_key: str | None


class _Attempt(_Event):
    payload_id: str
    destination_id: int
    attempt: int
    status_code: int | None
    duration_ms: float
    response_excerpt: str
    trigger: Trigger


class DeliverySucceeded(_Attempt):
    type: Literal["DeliverySucceeded"] = "DeliverySucceeded"


class DeliveryAttemptFailed(_Attempt):
    """A failed attempt that will be retried at ``next_attempt_at`` (ISO 8601, UTC)."""

    type: Literal["DeliveryAttemptFailed"] = "DeliveryAttemptFailed"
    error: ErrorClass
    next_attempt_at: str


class DeliveryFailed(_Attempt):
    """The last attempt failed and no retry follows; carries that attempt's details."""

    type: Literal["DeliveryFailed"] = "DeliveryFailed"
    error: ErrorClass


class DeliveryReplayRequested(_Event):
    type: Literal["DeliveryReplayRequested"] = "DeliveryReplayRequested"
    payload_id: str
    destination_ids: list[int]


Event = Annotated[
    AccountCreated
    | AccountUpdated
    | AccountTokenRotated
    | AccountDeleted
    | DestinationCreated
    | DestinationUpdated
    | DestinationDisabled
    | DestinationEnabled
    | DestinationDeleted
    | PayloadReceived
    | DeliverySucceeded
    | DeliveryAttemptFailed
    | DeliveryFailed
    | DeliveryReplayRequested,
    Field(discriminator="type"),
]

EVENT_ADAPTER: Final[TypeAdapter[Event]] = TypeAdapter(Event)

EVENT_TYPES: Final[Mapping[str, type[_Event]]] = {
    model.model_fields["type"].default: model
    for model in (
        AccountCreated,
        AccountUpdated,
        AccountTokenRotated,
        AccountDeleted,
        DestinationCreated,
        DestinationUpdated,
        DestinationDisabled,
        DestinationEnabled,
        DestinationDeleted,
        PayloadReceived,
        DeliverySucceeded,
        DeliveryAttemptFailed,
        DeliveryFailed,
        DeliveryReplayRequested,
    )
}


def body_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``body``: sorted keys, no spaces, UTF-8."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def upcast_payload_received_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: the body's digest is computed from the body; v1 had no idempotency key."""
    return {**data, "body_sha256": body_digest(data["body"]), "idempotency_key": None}


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTERS: Final[Mapping[tuple[str, int], Upcaster]] = {
    ("PayloadReceived", 1): upcast_payload_received_v1,
}
"""``(type, from_version) -> upcast_vN``: turns data of that version into the next one."""


def encode(event: Event, metadata: Metadata) -> NewEvent:
    """The event as the store appends it: its type, schema version and JSON data."""
    data = event.model_dump(mode="json", exclude={"type"})
    return NewEvent(
        type=event.type,
        data=data,
        schema_version=event.schema_version,
        metadata=metadata.as_dict(),
    )


def upcast(type_name: str, schema_version: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Bring stored data of any older schema version up to the current one."""
    model = EVENT_TYPES.get(type_name)
    if model is None:
        raise UnknownEventType(f"unknown event type {type_name!r}")
    if not isinstance(data, Mapping):
        raise EventDecodeError(f"{type_name} data is not a JSON object")
    if schema_version > model.schema_version:
        raise EventDecodeError(
            f"{type_name} v{schema_version} is newer than this code (v{model.schema_version})"
        )
    current = dict(data)
    version = schema_version
    while version < model.schema_version:
        step = UPCASTERS.get((type_name, version))
        if step is None:
            raise EventDecodeError(f"no upcaster for {type_name} v{version}")
        current = step(current)
        version += 1
    return current


def decode_json(type_name: str, schema_version: int, data: str | bytes) -> Event:
    """The event from its stored JSON text, parsed and validated in one step when the data is
    at the current version (the fast path for folding a long log)."""
    model = EVENT_TYPES.get(type_name)
    if model is None:
        raise UnknownEventType(f"unknown event type {type_name!r}")
    if schema_version != model.schema_version:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise EventDecodeError(f"{type_name} data is not JSON") from exc
        return _validate(type_name, upcast(type_name, schema_version, parsed))
    try:
        return cast(Event, model.model_validate_json(data))
    except ValidationError as exc:
        raise EventDecodeError(f"{type_name}: {exc}") from exc


def _validate(type_name: str, data: dict[str, Any]) -> Event:
    data["type"] = type_name
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventDecodeError(f"{type_name}: {exc}") from exc


def decode(record: Recorded) -> Event:
    """The record's event at its current shape; raises ``UnknownEventType``/``EventDecodeError``."""
    data = upcast(record.type, record.schema_version, record.data)
    data["type"] = record.type
    try:
        return EVENT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventDecodeError(f"event at position {record.position}: {exc}") from exc
