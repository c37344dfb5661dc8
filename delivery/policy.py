"""What an attempt's result means for its delivery: pure functions, no I/O, no clock.

``classify`` names the verdict, ``next_delay`` reads the retry schedule, and ``outcome``
turns an attempt into the events to record. Time and randomness come in as arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

from delivery.sender import AttemptResult
from eventstore.events import (
    DeliveryAttemptFailed,
    DeliveryFailed,
    DeliverySucceeded,
    DestinationDisabled,
    Event,
    Trigger,
)

Verdict = Literal["delivered", "gone", "blocked", "retry"]

JITTER: Final = 0.2
"""Each delay is drawn uniformly within ±20% of its scheduled value."""


def classify(result: AttemptResult) -> Verdict:
    """2xx is delivered; 410 Gone stops for good; the SSRF guard's refusal fails at once;
    everything else (timeouts, connection errors, 3xx, 4xx, 5xx) is retried."""
    if result.delivered:
        return "delivered"
    if result.status_code == 410:
        return "gone"
    if result.error == "blocked":
        return "blocked"
    return "retry"


def next_delay(attempt: int, schedule: Sequence[float], rand: float) -> float | None:
    """Seconds to wait after failed attempt number ``attempt`` (1-based), or None when the
    schedule is used up. ``rand`` in [0, 1) places the delay within the jitter band."""
    if attempt > len(schedule):
        return None
    return schedule[attempt - 1] * (1 + JITTER * (2 * rand - 1))


def honour_retry_after(delay: float, retry_after: float | None) -> float:
    """A receiver's ``Retry-After`` is honoured between the scheduled delay and twice it."""
    if retry_after is None:
        return delay
    return min(max(retry_after, delay), 2 * delay)


def outcome(
    result: AttemptResult,
    *,
    payload_id: str,
    destination_id: int,
    attempt: int,
    trigger: Trigger,
    schedule: Sequence[float],
    retry_number: int,
    rand: float,
    now: datetime,
) -> tuple[list[Event], list[Event]]:
    """The events for the payload's stream and for the destination's stream.

    ``attempt`` numbers every attempt of the delivery; ``retry_number`` counts them since the
    last replay, which restarts the schedule.

    A failure with a retry left is ``DeliveryAttemptFailed`` with ``next_attempt_at``; the
    last one is ``DeliveryFailed`` alone; a 410 is ``DeliveryFailed`` plus
    ``DestinationDisabled`` in the same append.
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
    if verdict == "gone":
        failed = DeliveryFailed(**common, error=result.error)
        return [failed], [DestinationDisabled(destination_id=destination_id, reason="gone")]
    delay = next_delay(retry_number, schedule, rand) if verdict == "retry" else None
    if delay is None:
        return [DeliveryFailed(**common, error=result.error)], []
    delay = honour_retry_after(delay, result.retry_after)
    due = (now + timedelta(seconds=delay)).isoformat(timespec="microseconds")
    return [DeliveryAttemptFailed(**common, error=result.error, next_attempt_at=due)], []
