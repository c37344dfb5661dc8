"""The retry policy: what an attempt's result means, when the next one is due, what is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from delivery.policy import JITTER, classify, honour_retry_after, next_delay, outcome
from delivery.sender import AttemptResult
from eventstore.events import (
    DeliveryAttemptFailed,
    DeliveryFailed,
    DeliverySucceeded,
    DestinationDisabled,
    ErrorClass,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SCHEDULE = (5.0, 300.0, 1800.0)
schedules = st.lists(
    st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=10
).map(lambda delays: tuple(sorted(delays)))
rands = st.floats(min_value=0, max_value=1, exclude_max=True)


def result(
    status: int | None, error: ErrorClass | None, retry_after: float | None = None
) -> AttemptResult:
    return AttemptResult(status, error, 1.25, "x", retry_after)


def decide(res: AttemptResult, retry_number: int = 1, **overrides: Any) -> tuple[list[Any], ...]:
    arguments: dict[str, Any] = {
        "payload_id": "P",
        "destination_id": 3,
        "attempt": retry_number,
        "trigger": "scheduled",
        "schedule": SCHEDULE,
        "retry_number": retry_number,
        "rand": 0.5,
        "now": NOW,
    }
    arguments.update(overrides)
    return outcome(res, **arguments)


def test_verdicts() -> None:
    """2xx delivered, 410 gone, blocked fails at once, every other failure is retried."""
    assert classify(result(200, None)) == "delivered"
    assert classify(result(204, None)) == "delivered"
    assert classify(result(410, "http")) == "gone"
    assert classify(result(None, "blocked")) == "blocked"
    for status in (301, 404, 429, 500):
        assert classify(result(status, "http")) == "retry"
    transports: tuple[ErrorClass, ...] = ("timeout", "connect", "dns", "tls")
    for transport in transports:
        assert classify(result(None, transport)) == "retry"


@given(schedules, rands, st.integers(min_value=1, max_value=12))
def test_delay_stays_within_its_jitter_band(
    schedule: tuple[float, ...], rand: float, attempt: int
) -> None:
    """Each delay is within ±20% of its scheduled value; none after the schedule ends."""
    delay = next_delay(attempt, schedule, rand)
    if attempt > len(schedule):
        assert delay is None
        return
    base = schedule[attempt - 1]
    assert delay is not None
    assert base * (1 - JITTER) <= delay <= base * (1 + JITTER) + 1e-9


@given(schedules, rands)
def test_delay_is_monotone_in_the_attempt_for_a_fixed_draw(
    schedule: tuple[float, ...], rand: float
) -> None:
    """With the same random draw, a later attempt never waits less than an earlier one."""
    delays = [next_delay(n, schedule, rand) for n in range(1, len(schedule) + 1)]
    assert all(d is not None for d in delays)
    assert delays == sorted(delays)  # type: ignore[type-var]


@given(st.floats(min_value=0.1, max_value=1e5), st.floats(min_value=0, max_value=1e6))
def test_retry_after_is_honoured_between_the_delay_and_twice_it(delay: float, asked: float) -> None:
    """Retry-After can stretch a delay up to twice, never shorten it."""
    honoured = honour_retry_after(delay, asked)
    assert delay <= honoured <= 2 * delay
    if delay <= asked <= 2 * delay:
        assert honoured == asked


def test_retryable_failure_schedules_the_next_attempt() -> None:
    """A 503 on attempt 1 is DeliveryAttemptFailed due after the first delay (rand=0.5: exact)."""
    [event], extra = decide(result(503, "http"))
    assert isinstance(event, DeliveryAttemptFailed)
    assert event.next_attempt_at == (NOW + timedelta(seconds=5)).isoformat(timespec="microseconds")
    assert extra == []


def test_retry_after_stretches_the_scheduled_delay() -> None:
    """A 429 asking for 8 s on a 5 s delay waits 8 s; asking for an hour waits 10 s."""
    [event], _ = decide(result(429, "http", retry_after=8))
    assert event.next_attempt_at == (NOW + timedelta(seconds=8)).isoformat(timespec="microseconds")
    [event], _ = decide(result(429, "http", retry_after=3600))
    assert event.next_attempt_at == (NOW + timedelta(seconds=10)).isoformat(timespec="microseconds")


def test_last_failure_is_delivery_failed_alone() -> None:
    """After the last scheduled retry, the failure is final: DeliveryFailed, no next time."""
    [event], extra = decide(result(None, "timeout"), retry_number=len(SCHEDULE) + 1)
    assert isinstance(event, DeliveryFailed)
    assert (event.error, event.status_code) == ("timeout", None)
    assert extra == []


def test_blocked_fails_at_once() -> None:
    """The SSRF guard's refusal is not retried."""
    [event], _ = decide(result(None, "blocked"))
    assert isinstance(event, DeliveryFailed)
    assert event.error == "blocked"


def test_gone_fails_the_delivery_and_disables_the_destination() -> None:
    """A 410 is a DeliveryFailed plus a DestinationDisabled with reason gone."""
    on_payload, on_destination = decide(result(410, "http"))
    assert [type(e) for e in on_payload] == [DeliveryFailed]
    assert on_destination == [DestinationDisabled(destination_id=3, reason="gone")]


@pytest.mark.parametrize("trigger", ["scheduled", "manual", "recover"])
def test_success_carries_the_attempt_details(trigger: str) -> None:
    """The recorded event has the status code, duration, excerpt, attempt number and trigger."""
    [event], extra = decide(result(200, None), retry_number=1, attempt=4, trigger=trigger)
    assert isinstance(event, DeliverySucceeded)
    assert (event.status_code, event.duration_ms, event.response_excerpt) == (200, 1.25, "x")
    assert (event.attempt, event.trigger) == (4, trigger)
    assert extra == []
