"""The delivery worker: turns due deliveries into HTTP attempts and attempts into events.

What is due lives in the ``deliveries`` read model, folded from the log in the same
transaction as each append, so the log is the outbox: a payload acknowledged with 202 is a
pending delivery there until an outcome is recorded, across any number of restarts.

Fairness: at most ``concurrency`` attempts run at once, and at most ``per_destination`` to one
destination; a destination at its limit is left out of the next query, so one that hangs
holds only its own slots while the others keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from delivery.policy import outcome
from delivery.sender import OutboundRequest, Sender
from eventstore.errors import EventStoreError
from eventstore.events import Metadata, Trigger, destination_stream, encode, payload_stream
from eventstore.records import ANY_VERSION, Recorded, StreamAppend
from eventstore.sqlite import SQLiteEventStore
from projections import queries as q
from projections.models import DeliveryView, DestinationView

log = structlog.get_logger("delivery")

IDLE_WAIT: Final = 30.0
"""Longest sleep with nothing due; a commit or a finished attempt wakes the worker sooner."""


BUSY_WAIT: Final = 1.0
COALESCE: Final = 0.002
"""Seconds a finished attempt waits for others to finish before the next dispatch."""
NEW_WORK: Final = frozenset({"PayloadReceived", "DeliveryReplayRequested"})


@dataclass(frozen=True, slots=True)
class Plan:
    """One dispatch round, read in one hop: the jobs to start and what they need."""

    jobs: list[DeliveryView]
    destinations: dict[int, DestinationView | None]
    bodies: dict[int, Any]
    next_due: str | None
    snapshot: int
    """The log position the plan was read at."""


def _claimable(
    jobs: Sequence[DeliveryView],
    free: int,
    per_destination: int,
    skip: frozenset[tuple[str, int]],
    counts: Counter[int],
) -> list[DeliveryView]:
    """Up to ``free`` jobs not in ``skip`` and within each destination's limit."""
    chosen: list[DeliveryView] = []
    counts = Counter(counts)
    for job in jobs:
        key = (job.payload_id, job.destination_id)
        if key in skip or counts[job.destination_id] >= per_destination:
            continue
        counts[job.destination_id] += 1
        chosen.append(job)
        if len(chosen) == free:
            break
    return chosen


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeliveryWorker:
    """Runs until ``stop``; every attempt it starts is awaited or cancelled before it returns."""

    def __init__(
        self,
        store: SQLiteEventStore,
        sender: Sender,
        *,
        schedule: Sequence[float],
        concurrency: int = 64,
        per_destination: int = 8,
        grace: float = 5.0,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.schedule = tuple(schedule)
        self.rand = rand
        self.concurrency = concurrency
        self.per_destination = per_destination
        self.grace = grace
        self.clock = clock
        self._wake = asyncio.Event()
        self._started_at = clock().isoformat(timespec="microseconds")
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: set[tuple[str, int]] = set()
        # Outcomes recorded, by the log position that recorded them: a due-query whose
        # snapshot is older still shows those deliveries as due, and must not restart them.
        self._settled: dict[tuple[str, int], int] = {}
        self._by_destination: Counter[int] = Counter()
        self._coalescing: asyncio.TimerHandle | None = None
        store.add_listener(self._on_commit)

    async def run(self) -> None:
        """Dispatch due deliveries until ``stop``; then let attempts finish or cancel them."""
        try:
            while not self._stopping:
                self._wake.clear()
                wait = await self._dispatch()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
        finally:
            if self._coalescing is not None:
                self._coalescing.cancel()
            await self._drain()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _drain(self) -> None:
        """Give attempts in flight ``grace`` seconds; cancel the rest (they stay pending)."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.grace)
        if self._tasks:
            log.info("delivery.left_pending_at_shutdown", attempts=len(self._tasks))
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _dispatch(self) -> float | None:
        """Start what is due and has a free slot; returns how long to sleep (None: until woken)."""
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return None
        busy = [d for d, n in self._by_destination.items() if n >= self.per_destination]
        now = self.clock().isoformat(timespec="microseconds")

        skip = frozenset(self._in_flight) | self._settled.keys()
        counts = Counter(self._by_destination)

        def plan(conn: Any) -> Plan:
            """One hop: what is due, what of it can start, and what starting it needs."""
            due = q.due_deliveries(conn, now=now, limit=self.concurrency, busy=busy)
            chosen = _claimable(due, free, self.per_destination, skip, counts)
            ids = {job.destination_id for job in chosen}
            return Plan(
                jobs=chosen,
                destinations={d: q.destination(conn, d) for d in ids},
                bodies=q.payload_bodies(conn, [job.payload_position for job in chosen]),
                next_due=q.next_due_at(conn),
                snapshot=q.log_head(conn),
            )

        planned = await self.store.query(plan)
        self._settled = {k: at for k, at in self._settled.items() if at > planned.snapshot}
        self._start(planned)
        next_due = planned.next_due
        if next_due is None:
            return IDLE_WAIT
        wait = (datetime.fromisoformat(next_due) - self.clock()).total_seconds()
        # Due now but not started (all slots taken): a finished attempt wakes us; the short
        # timeout is only a safety net.
        return min(wait, IDLE_WAIT) if wait > 0 else BUSY_WAIT

    def _start(self, planned: Plan) -> None:
        # Outcomes recorded while the plan was read are not started again (_settled).
        for job in planned.jobs:
            key = (job.payload_id, job.destination_id)
            destination = planned.destinations.get(job.destination_id)
            if destination is None or not destination.enabled or key in self._settled:
                continue  # deleted or disabled meanwhile: the fold marks it skipped
            self._in_flight.add(key)
            self._by_destination[job.destination_id] += 1
            body = planned.bodies[job.payload_position]
            task = asyncio.create_task(self._attempt(job, destination, body))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, int], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight.discard(key)
        self._by_destination[key[1]] -= 1
        if self._by_destination[key[1]] <= 0:
            del self._by_destination[key[1]]
        # Attempts finish in bursts: one dispatch a few milliseconds later serves them all,
        # instead of one query per finished attempt.
        if self._coalescing is None:
            self._coalescing = asyncio.get_running_loop().call_later(COALESCE, self._wake_now)

    def _wake_now(self) -> None:
        self._coalescing = None
        self._wake.set()

    def _on_commit(self, records: Sequence[Recorded]) -> None:
        """New work (a payload, a replay) wakes the worker; outcomes of its own attempts do
        not, since their tasks' ends already do."""
        if any(record.type in NEW_WORK for record in records):
            self._wake.set()

    def _trigger(self, job: DeliveryView) -> Trigger:
        """``recover`` for a scheduled attempt that fell due before this process started."""
        if job.next_trigger == "scheduled" and (job.next_attempt_at or "") < self._started_at:
            return "recover"
        return job.next_trigger

    async def _attempt(
        self, job: DeliveryView, destination: DestinationView, body: Mapping[str, Any]
    ) -> None:
        attempt = job.attempts + 1
        bound = log.bind(
            payload_id=job.payload_id, destination_id=job.destination_id, attempt=attempt
        )
        request = OutboundRequest(
            method=destination.http_method,
            url=destination.url,
            headers=destination.headers,
            body=body,
            webhook_id=job.payload_id,
        )
        result = await self.sender.send(request, timestamp=int(self.clock().timestamp()))
        on_payload, on_destination = outcome(
            result,
            payload_id=job.payload_id,
            destination_id=job.destination_id,
            attempt=attempt,
            trigger=self._trigger(job),
            schedule=self.schedule,
            retry_number=attempt - job.schedule_base,
            rand=self.rand(),
            now=self.clock(),
        )
        metadata = Metadata(actor="system", causation=job.caused_by)
        appends = [
            StreamAppend(
                payload_stream(job.payload_id),
                ANY_VERSION,
                [encode(e, metadata) for e in on_payload],
            )
        ]
        if on_destination:
            appends.append(
                StreamAppend(
                    destination_stream(job.destination_id),
                    ANY_VERSION,
                    [encode(e, metadata) for e in on_destination],
                )
            )
        try:
            recorded = await self.store.append(appends)
        except EventStoreError as exc:
            # Not recorded: the delivery stays open and is attempted again (at least once).
            bound.warning("delivery.outcome_not_recorded", error=str(exc))
            return
        self._settled[(job.payload_id, job.destination_id)] = recorded[-1].position
        bound.info(
            "delivery.attempted",
            outcome=on_payload[0].type,
            status=result.status_code,
            error=result.error,
            duration_ms=round(result.duration_ms, 1),
        )
