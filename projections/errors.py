"""Errors raised by the read models.

The tree::

    eventstore.errors.AppendRejected      (an append refused inside its own transaction)
    └── InvariantViolated                 a rule that spans streams would break
        ├── DuplicateEmail                another live account has this email
        ├── AccountNotLive                a destination's account does not exist (any more)
        ├── AccountHasDestinations        an account is deleted while it still has destinations
        ├── DestinationsChanged           a payload names a destination that is gone or disabled
        └── IdempotencyKeyTaken           the account used this Idempotency-Key in the last 24 h
    ProjectionError                       a read model cannot be built from the log

Each ``InvariantViolated`` is raised on the writer thread while the append is still open, so the
append is undone and only its caller sees the error; the command handler then decides again
on fresh state.
"""

from __future__ import annotations

from eventstore.errors import AppendRejected


class InvariantViolated(AppendRejected):
    """An append would break a rule that spans streams."""


class DuplicateEmail(InvariantViolated):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account with email {email!r} already exists")
        self.email = email


class AccountNotLive(InvariantViolated):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} does not exist")
        self.account_id = account_id


class AccountHasDestinations(InvariantViolated):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"account {account_id} still has destinations")
        self.account_id = account_id


class DestinationsChanged(InvariantViolated):
    def __init__(self, payload_id: str) -> None:
        super().__init__(f"payload {payload_id} names a destination that is deleted or disabled")
        self.payload_id = payload_id


class IdempotencyKeyTaken(InvariantViolated):
    def __init__(self, account_id: int, key: str) -> None:
        super().__init__(f"account {account_id} already used idempotency key {key!r}")
        self.account_id = account_id
        self.key = key


class ProjectionError(Exception):
    """The log could not be folded into a read model (a bug or a corrupt log)."""
