"""What an attempt's result means for the delivery: pure functions, no I/O, no clock.

``classify`` names the verdict; ``outcome`` turns it into the events to record.
"""

from __future__ import annotations

from typing import Literal

from delivery.sender import AttemptResult
from eventstore.events import (
    DeliveryFailed,
    DeliverySucceeded,
    DestinationDisabled,
    Event,
    Trigger,
)

Verdict = Literal["delivered", "gone", "failed"]


def classify(result: AttemptResult) -> Verdict:
    """2xx is delivered; 410 Gone means the receiver wants no more; anything else failed."""
    if result.delivered:
        return "delivered"
    if result.status_code == 410:
        return "gone"
    return "failed"


def outcome(
    result: AttemptResult,
    *,
    payload_id: str,
    destination_id: int,
    attempt: int,
    trigger: Trigger,
) -> tuple[list[Event], list[Event]]:
    """The events for the payload's stream and for the destination's stream.

    A 410 also disables the destination, in the same append.
    """
    common = {
        "payload_id": payload_id,
        "destination_id": destination_id,
        "attempt": attempt,
        "status_code": result.status_code,
        "duration_ms": round(result.duration_ms, 3),
        "response_excerpt": result.response_excerpt,
        "trigger": trigger,
    }
    verdict = classify(result)
    if verdict == "delivered":
        return [DeliverySucceeded(**common)], []
    assert result.error is not None
    failed = DeliveryFailed(**common, error=result.error)
    if verdict == "gone":
        return [failed], [DestinationDisabled(destination_id=destination_id, reason="gone")]
    return [failed], []
