"""The figures of a server under steady load, without a limit: end-to-end latency and memory.

Each run starts a fresh server and sink (``bench.scenarios.live_service``).
"""

from __future__ import annotations

import json
import time

from bench import loadgen
from bench.errors import HarnessError
from bench.loadgen import LoadResult
from bench.plan import E2E_DESTINATIONS, E2E_RATE, Bench
from bench.report import Figure
from bench.scenarios import SEND_CONNECTIONS, Live, live_service, ms
from bench.stats import median, percentile


def _timed_body(number: int, now: float) -> bytes:
    return json.dumps({"sent_at": now, "n": number, "event": "bench"}).encode()


async def _e2e_run(bench: Bench) -> tuple[list[float], LoadResult, int]:
    """Latencies (s) of the deliveries that arrived, the sender's result, deliveries missing."""
    plan = bench.plan
    async with live_service(bench, E2E_DESTINATIONS, "/timed/") as live:
        target = live.target(b"{}")
        warm = await loadgen.open_loop(
            target, _timed_body, rate=E2E_RATE, seconds=min(1.0, plan.warmup)
        )
        await live.control.wait_count(warm.ok * E2E_DESTINATIONS, limit=30)
        await live.admin.wait_settled(limit=30)
        await live.control.reset()
        result = await loadgen.open_loop(
            target, _timed_body, rate=E2E_RATE, seconds=plan.e2e_seconds
        )
        expected = result.ok * E2E_DESTINATIONS
        arrived = await live.control.wait_count(expected, limit=30)
        return await live.control.latencies(), result, expected - arrived


async def e2e(bench: Bench) -> list[Figure]:
    """A steady 500 payloads/s to 3 destinations: sink receive time minus client send time."""
    p50s: list[float] = []
    p99s: list[float] = []
    ingest_p99s: list[float] = []
    missing = 0
    lag = 0.0
    for _ in range(bench.plan.e2e_runs):
        latencies, result, absent = await _e2e_run(bench)
        if not latencies:
            raise HarnessError("end-to-end: no delivery arrived")
        missing += max(0, absent) + result.errors * E2E_DESTINATIONS
        p50s.append(percentile(latencies, 0.50))
        p99s.append(percentile(latencies, 0.99))
        ingest_p99s.append(result.p99)
        lag = max(lag, result.lag)
    p99 = ms(median(p99s))
    notes = (
        f"{E2E_RATE:.0f} payloads/s open loop for {bench.plan.e2e_seconds:.0f} s, "
        f"{E2E_DESTINATIONS} destinations; sink receive time minus the client's send time "
        f"(in the body); median of {len(p99s)} runs; ingest p99 "
        f"{ms(median(ingest_p99s)):.1f} ms; sender at most {ms(lag):.1f} ms behind schedule"
    )
    if missing:
        notes += f"; {missing} deliveries missing or not sent (not in the percentiles)"
    return [
        Figure("e2e.p50", ms(median(p50s)), "ms", notes=notes),
        Figure("e2e.p99", p99, "ms", target="< 50 ms", met=p99 < 50.0 and not missing),
    ]


async def _deliver_until(live: Live, sent: int, count: int, deadline: float, chunk: int) -> int:
    """Post payloads in chunks, never more than one chunk ahead of the sink, until ``count``
    were sent or ``deadline`` (monotonic) passed; then wait, a little past the deadline at
    most, until all were delivered and recorded. Returns how many were sent in all.

    Pacing keeps the backlog of pending deliveries small, so that the figure is about the
    memory of a server that keeps up, not about the cost of a large backlog.
    """

    def left(least: float) -> float:
        return max(least, deadline - time.monotonic())

    while sent < count and time.monotonic() < deadline:
        result = await loadgen.send_count(
            live.target(),
            count=min(chunk, count - sent),
            connections=SEND_CONNECTIONS,
            limit=left(1.0),
        )
        sent += result.ok
        await live.control.wait_count(sent - chunk, limit=left(1.0))
    await live.control.wait_count(sent, limit=left(10.0))
    await live.admin.wait_settled(limit=left(10.0))
    return sent


async def memory(bench: Bench) -> list[Figure]:
    """Server RSS after the first and after the second count of payloads delivered.

    The first count gets at most half of ``plan.memory_budget``, the whole run at most the
    budget; the figures say how far they got.
    """
    plan = bench.plan
    started = time.monotonic()
    deadlines = (started + 0.5 * plan.memory_budget, started + plan.memory_budget)
    readings: list[tuple[int, int, int]] = []
    async with live_service(bench, 1, "/m") as live:
        sent = 0
        for count, deadline in zip(plan.memory_counts, deadlines, strict=True):
            sent = await _deliver_until(live, sent, count, deadline, plan.memory_chunk)
            readings.append((*(await live.control.counts()), live.service.child.rss_bytes()))
    return _memory_figures(bench, readings, time.monotonic() - started)


def _memory_figures(
    bench: Bench, readings: list[tuple[int, int, int]], seconds: float
) -> list[Figure]:
    """``readings``: (requests received, distinct deliveries, RSS bytes) at each checkpoint."""
    (_, n_small, rss_small), (received, n_large, rss_large) = readings
    small, large = bench.plan.memory_counts
    reached = n_small >= small and n_large >= large
    ratio = rss_large / rss_small
    notes = (
        f"1 destination, payloads posted {bench.plan.memory_chunk} at a time; RSS after "
        f"{n_small} and after {n_large} payloads delivered ({n_large / seconds:.0f} payloads/s)"
    )
    if received > n_large:
        notes += f"; {received - n_large} deliveries arrived twice"
    if bench.plan.quick:
        notes += f"; quick mode: the full run uses {100_000} and {1_000_000}"
    if not reached:
        notes += (
            f"; NOT JUDGED: {small} then {large} were wanted and the time budget "
            f"({bench.plan.memory_budget:.0f} s) ran out first"
        )
    mib = 1024 * 1024
    return [
        Figure("memory.rss_small", rss_small / mib, "MiB", notes=f"after {n_small} payloads"),
        Figure("memory.rss_large", rss_large / mib, "MiB", notes=f"after {n_large} payloads"),
        Figure(
            "memory.growth",
            ratio,
            "x",
            target=f"<= 1.2 ({small} -> {large} payloads)",
            met=ratio <= 1.2 if reached else None,
            notes=notes,
        ),
    ]
