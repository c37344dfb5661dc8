"""The pure folds: how each event changes a read model's row."""

from __future__ import annotations

import pytest

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
    PayloadReceived,
)
from projections.errors import ProjectionError
from projections.folds import ReadModel, Stamp, evolve_account, evolve_destination

T0 = Stamp(position=1, version=1, at="2026-01-01T00:00:00.000000+00:00")


def stamp(position: int, version: int = 1) -> Stamp:
    return Stamp(position, version, f"2026-01-01T00:00:{position:02d}.000000+00:00")


def created() -> AccountCreated:
    return AccountCreated(
        account_id=7, email="a@example.com", account_name="A", website=None, token_sha256="0" * 64
    )


def test_account_lifecycle_keeps_creation_time_and_tracks_version() -> None:
    """Updates, rotation and deletion change fields, version and updated_at, never created_at."""
    view = evolve_account(None, created(), T0)
    view = evolve_account(
        view,
        AccountUpdated(account_id=7, email="b@example.com", account_name="B", website="https://b/"),
        stamp(2, 2),
    )
    view = evolve_account(
        view, AccountTokenRotated(account_id=7, token_sha256="1" * 64), stamp(3, 3)
    )
    assert (view.email, view.account_name, view.website) == ("b@example.com", "B", "https://b/")
    assert view.token_sha256 == "1" * 64
    assert view.created_at == T0.at
    assert view.updated_at == stamp(3).at
    assert view.version == 3
    deleted = evolve_account(view, AccountDeleted(account_id=7), stamp(4, 4))
    assert deleted.deleted
    assert deleted.version == 4


def test_event_for_a_missing_account_is_a_projection_error() -> None:
    """An update of an account that was never created means a corrupt log, not a silent skip."""
    with pytest.raises(ProjectionError):
        evolve_account(None, AccountDeleted(account_id=1), T0)


def test_destination_disable_and_enable_track_the_reason() -> None:
    """Disabling records why; enabling clears it."""
    view = evolve_destination(
        None,
        DestinationCreated(
            destination_id=3, account_id=7, url="https://x/", http_method="POST", headers={}
        ),
        T0,
    )
    assert view.enabled
    view = evolve_destination(
        view, DestinationDisabled(destination_id=3, reason="gone"), stamp(2, 2)
    )
    assert (view.enabled, view.disabled_reason) == (False, "gone")
    view = evolve_destination(view, DestinationEnabled(destination_id=3), stamp(3, 3))
    assert (view.enabled, view.disabled_reason) == (True, None)


def _model_with_payload() -> ReadModel:
    model = ReadModel()
    model.apply(created(), T0)
    for destination_id in (1, 2):
        model.apply(
            DestinationCreated(
                destination_id=destination_id,
                account_id=7,
                url="https://x/",
                http_method="POST",
                headers={},
            ),
            stamp(1 + destination_id),
        )
    model.apply(
        PayloadReceived(
            payload_id="P",
            account_id=7,
            body={"k": 1},
            destination_ids=[1, 2],
            body_sha256="0" * 64,
            idempotency_key=None,
        ),
        stamp(10),
    )
    return model


def test_payload_fans_out_into_pending_deliveries_due_at_receipt() -> None:
    """Each named destination gets a pending delivery, due at once, pointing at the payload."""
    model = _model_with_payload()
    delivery = model.deliveries[("P", 1)]
    assert (delivery.status, delivery.attempts, delivery.payload_position) == ("pending", 0, 10)
    assert delivery.next_attempt_at == stamp(10).at
    assert set(model.deliveries) == {("P", 1), ("P", 2)}


def test_attempt_outcomes_set_status_and_schedule() -> None:
    """Success closes the delivery, a retryable failure schedules it, a final failure closes it."""
    model = _model_with_payload()
    common = {"payload_id": "P", "status_code": 500, "duration_ms": 1.0, "response_excerpt": ""}
    model.apply(
        DeliveryAttemptFailed(
            **common,
            destination_id=1,
            attempt=1,
            trigger="scheduled",
            error="http",
            next_attempt_at="2030-01-01T00:00:00.000000+00:00",
        ),
        stamp(11),
    )
    retrying = model.deliveries[("P", 1)]
    assert (retrying.status, retrying.attempts, retrying.last_error) == ("retrying", 1, "http")
    assert retrying.next_attempt_at == "2030-01-01T00:00:00.000000+00:00"
    model.apply(
        DeliveryFailed(**common, destination_id=1, attempt=2, trigger="scheduled", error="http"),
        stamp(12),
    )
    model.apply(
        DeliverySucceeded(
            payload_id="P",
            destination_id=2,
            attempt=1,
            status_code=204,
            duration_ms=1.0,
            response_excerpt="",
            trigger="scheduled",
        ),
        stamp(13),
    )
    assert model.deliveries[("P", 1)].status == "failed"
    assert model.deliveries[("P", 1)].next_attempt_at is None
    assert model.deliveries[("P", 2)].status == "delivered"


def test_disabling_or_deleting_a_destination_skips_its_open_deliveries_only() -> None:
    """Open deliveries of that destination become skipped; closed ones and others are kept."""
    model = _model_with_payload()
    model.apply(DestinationDisabled(destination_id=1, reason="manual"), stamp(11, 2))
    model.apply(DestinationDeleted(destination_id=1, account_id=7), stamp(12, 3))
    assert model.deliveries[("P", 1)].status == "skipped"
    assert model.deliveries[("P", 2)].status == "pending"


def test_replay_reopens_a_delivery_and_keeps_its_attempt_count() -> None:
    """A replay makes the delivery due again; attempt numbers continue."""
    model = _model_with_payload()
    model.apply(
        DeliveryFailed(
            payload_id="P",
            destination_id=1,
            attempt=3,
            status_code=None,
            duration_ms=1.0,
            response_excerpt="",
            trigger="scheduled",
            error="connect",
        ),
        stamp(11),
    )
    model.apply(DeliveryReplayRequested(payload_id="P", destination_ids=[1]), stamp(12))
    replayed = model.deliveries[("P", 1)]
    assert (replayed.status, replayed.attempts) == ("pending", 3)
    assert replayed.next_attempt_at == stamp(12).at
    assert (replayed.next_trigger, replayed.schedule_base) == ("manual", 3)


def test_failure_arriving_after_a_skip_does_not_reopen_the_delivery() -> None:
    """An attempt in flight when its destination was disabled cannot schedule a retry."""
    model = _model_with_payload()
    model.apply(DestinationDisabled(destination_id=1, reason="manual"), stamp(11, 2))
    model.apply(
        DeliveryAttemptFailed(
            payload_id="P",
            destination_id=1,
            attempt=1,
            status_code=503,
            duration_ms=1.0,
            response_excerpt="",
            trigger="scheduled",
            error="http",
            next_attempt_at="2030-01-01T00:00:00.000000+00:00",
        ),
        stamp(12),
    )
    skipped = model.deliveries[("P", 1)]
    assert (skipped.status, skipped.next_attempt_at, skipped.attempts) == ("skipped", None, 1)
