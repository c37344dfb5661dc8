"""The figures with a limit: ingest (limits A and B) and fan-out (limit C).

Every run starts a fresh server (or limit) on a fresh database, throws a warm-up away, then
measures for a fixed time or count. Figures with a limit alternate a run of the service
with a run of the limit, ``plan.pairs`` times, and report the median of the per-pair ratios.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from bench import loadgen
from bench.errors import HarnessError
from bench.loadgen import LoadResult, Target
from bench.plan import (
    CONCURRENCIES,
    DELIVERY_IN_FLIGHT,
    FANOUT_DESTINATIONS,
    LIMIT_CONCURRENCY,
    Bench,
)
from bench.procs import Child, free_port, python_module, run_to_end, running
from bench.report import Figure
from bench.service import Admin, Service, serve
from bench.sink import SinkControl, sink
from bench.stats import median

BODY: Final = json.dumps(
    {
        "event": "order.created",
        "order_id": 123456,
        "amount": 42.5,
        "currency": "EUR",
        "customer": {"id": 98765, "country": "FR"},
        "items": [{"sku": "A-100", "qty": 2}, {"sku": "B-200", "qty": 1}],
    },
    separators=(",", ":"),
).encode()
SEND_CONNECTIONS: Final = 16
"""Connections used to post the payloads of the fan-out and memory scenarios."""
_limits = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured run: rate per second, latencies in seconds, CPU µs per operation."""

    rate: float
    p50: float
    p99: float
    cpu_us: float
    errors: int


def ms(seconds: float) -> float:
    return seconds * 1000.0


def _cpu_us(cpu_seconds: float, operations: int) -> float:
    return cpu_seconds / operations * 1e6 if operations else 0.0


async def _drive(bench: Bench, child: Child, target: Target, connections: int) -> Sample:
    """Warm up (thrown away), then measure ``plan.seconds`` of closed-loop load."""
    plan = bench.plan

    async def load(seconds: float) -> LoadResult:
        return await loadgen.closed_loop(
            target,
            connections=connections,
            seconds=seconds,
            tool=bench.tool,
            workdir=bench.workdir,
            core=bench.placement.load,
        )

    await load(plan.warmup)
    before = child.cpu_seconds()
    result = await load(plan.seconds)
    cpu = child.cpu_seconds() - before
    if result.ok == 0:
        raise HarnessError(f"{child.name}: no request succeeded ({result.errors} errors)")
    return Sample(result.rate, result.p50, result.p99, _cpu_us(cpu, result.ok), result.errors)


# -- ingest ---------------------------------------------------------------------------------


async def _ingest_run(bench: Bench, connections: int) -> Sample:
    async with serve(bench.workdir, core=bench.placement.service) as service:
        async with Admin(service.base) as admin:
            _, token = await admin.create_account()
        target = Target(service.port, "/api/data/", {"CL-X-TOKEN": token}, BODY)
        return await _drive(bench, service.child, target, connections)


async def _limit_run(bench: Bench, which: str) -> Sample:
    number = next(_limits)
    port = free_port()
    argv = python_module("bench.limits", which, "--port", str(port))
    if which == "b":
        argv += ["--db", str(bench.workdir / f"limit-b-{number}.sqlite3")]
    async with running(
        f"limit-{which}-{number}",
        argv,
        workdir=bench.workdir,
        core=bench.placement.service,
        ready_url=f"http://127.0.0.1:{port}/health",
    ) as child:
        target = Target(port, "/api/data/", {"CL-X-TOKEN": "unused-by-the-limit"}, BODY)
        return await _drive(bench, child, target, LIMIT_CONCURRENCY)


@dataclass(slots=True)
class Pairs:
    """Alternated runs of the service and of one limit: their ratios, pair by pair.

    The throughput ratio is the figure; the CPU ratio (the limit's CPU per operation over
    the service's) says nearly the same on an idle machine and is much less disturbed when
    other processes steal time from the measured core.
    """

    system: list[Sample] = dataclasses.field(default_factory=list)
    limit: list[Sample] = dataclasses.field(default_factory=list)

    def add(self, system: Sample, limit: Sample) -> None:
        self.system.append(system)
        self.limit.append(limit)

    @property
    def ratio(self) -> float:
        pairs = zip(self.system, self.limit, strict=True)
        return median([system.rate / limit.rate for system, limit in pairs])

    @property
    def cpu_ratio(self) -> float:
        pairs = zip(self.system, self.limit, strict=True)
        return median([limit.cpu_us / system.cpu_us for system, limit in pairs if system.cpu_us])

    def describe(self, limit: str) -> str:
        return (
            f"{self.ratio:.2f} of {limit} by throughput, {self.cpu_ratio:.2f} by CPU per "
            f"operation (median of {len(self.system)} alternated pairs)"
        )


async def ingest(bench: Bench) -> list[Figure]:
    """``POST /api/data/`` at each concurrency; limits A and B at 64, alternated with it."""
    runs: dict[int, list[Sample]] = {c: [] for c in CONCURRENCIES}
    versus_a, versus_b = Pairs(), Pairs()
    for _ in range(bench.plan.pairs):
        system = await _ingest_run(bench, LIMIT_CONCURRENCY)
        runs[LIMIT_CONCURRENCY].append(system)
        versus_b.add(system, await _limit_run(bench, "b"))
        versus_a.add(system, await _limit_run(bench, "a"))
        for connections in CONCURRENCIES:
            if connections != LIMIT_CONCURRENCY:
                runs[connections].append(await _ingest_run(bench, connections))
    figures: list[Figure] = []
    for connections in CONCURRENCIES:
        throughput, p50, p99 = _ingest_figures(bench, connections, runs[connections])
        if connections == LIMIT_CONCURRENCY:
            throughput = dataclasses.replace(
                throughput,
                limit=median([s.rate for s in versus_b.limit]),
                ratio=versus_b.ratio,
                target=">= 0.5 x limit B",
                met=versus_b.ratio >= 0.5,
                notes=f"{throughput.notes}; {versus_b.describe('limit B')}; "
                f"{versus_a.describe('limit A')}",
            )
        figures += [throughput, p50, p99]
    for name, samples, what in (
        ("limit_a", versus_a.limit, "bare aiohttp handler: parse the JSON body, answer 202"),
        (
            "limit_b",
            versus_b.limit,
            "limit A plus one durable insert per request through a group-committing "
            "aiosqlite writer (WAL, synchronous=FULL)",
        ),
    ):
        tail = ms(median([s.p99 for s in samples]))
        figures.append(
            Figure(
                name=f"{name}.c{LIMIT_CONCURRENCY}.throughput",
                value=median([s.rate for s in samples]),
                unit="req/s",
                cpu_us=median([s.cpu_us for s in samples]),
                notes=f"{what}; p99 {tail:.2f} ms",
            )
        )
    return figures


def _ingest_figures(
    bench: Bench, connections: int, samples: list[Sample]
) -> tuple[Figure, Figure, Figure]:
    """Throughput, p50 and p99 at one concurrency (the p99 target applies at 64)."""
    name = f"ingest.c{connections}"
    errors = sum(s.errors for s in samples)
    note = (
        "an account with 0 destinations (pure ingest, no fan-out); "
        f"median of {len(samples)} runs, {bench.tool}"
    )
    if errors:
        note += f"; {errors} requests failed"
    p99 = ms(median([s.p99 for s in samples]))
    target = "< 20 ms" if connections == LIMIT_CONCURRENCY else None
    return (
        Figure(
            name=f"{name}.throughput",
            value=median([s.rate for s in samples]),
            unit="req/s",
            cpu_us=median([s.cpu_us for s in samples]),
            notes=note,
        ),
        Figure(f"{name}.p50", ms(median([s.p50 for s in samples])), "ms"),
        Figure(f"{name}.p99", p99, "ms", target=target, met=p99 < 20.0 if target else None),
    )


# -- fan-out ---------------------------------------------------------------------------------


async def _account_with_destinations(
    admin: Admin, control: SinkControl, count: int, prefix: str
) -> str:
    account, token = await admin.create_account()
    for number in range(count):
        await admin.create_destination(account, control.url(f"{prefix}{number}"))
    return token


@dataclass(frozen=True, slots=True)
class Live:
    """A fresh server and sink, and an account whose destinations all point at the sink."""

    control: SinkControl
    service: Service
    admin: Admin
    token: str

    def target(self, body: bytes = BODY) -> Target:
        return Target(self.service.port, "/api/data/", {"CL-X-TOKEN": self.token}, body)


@contextlib.asynccontextmanager
async def live_service(bench: Bench, destinations: int, prefix: str) -> AsyncIterator[Live]:
    async with (
        sink(bench.workdir, core=bench.placement.load) as control,
        serve(bench.workdir, core=bench.placement.service) as service,
        Admin(service.base) as admin,
    ):
        token = await _account_with_destinations(admin, control, destinations, prefix)
        yield Live(control, service, admin, token)


@dataclass(frozen=True, slots=True)
class _Delivered:
    """How a batch of payloads went: seconds from the first 202 to the last outcome, server
    CPU seconds over the whole batch, distinct deliveries that arrived, duplicates among what
    arrived, and whether everything arrived and was recorded within the time limit."""

    seconds: float
    cpu: float
    arrived: int
    duplicates: int
    settled: bool


async def _post_and_deliver(live: Live, payloads: int, fan: int) -> _Delivered:
    """Post ``payloads`` and wait until the sink has them all and every outcome is logged."""
    expected = payloads * fan
    limit = 30.0 + expected / 100.0
    cpu_before = live.service.child.cpu_seconds()
    sent = await loadgen.send_count(
        live.target(), count=payloads, connections=SEND_CONNECTIONS, limit=limit
    )
    if sent.first_answer is None or sent.ok < payloads:
        raise HarnessError(f"only {sent.ok} of {payloads} payloads were accepted")
    arrived = await live.control.wait_count(expected, limit=limit)
    settled = arrived >= expected and await live.admin.wait_settled(limit=limit)
    elapsed = time.perf_counter() - sent.first_answer
    cpu = live.service.child.cpu_seconds() - cpu_before
    count, distinct = await live.control.counts()
    return _Delivered(elapsed, cpu, distinct, count - distinct, settled)


async def _fanout_run(bench: Bench) -> tuple[Sample, _Delivered]:
    plan = bench.plan
    async with live_service(bench, FANOUT_DESTINATIONS, "/d") as live:
        await _post_and_deliver(live, plan.fanout_warmup, FANOUT_DESTINATIONS)
        await live.control.reset()
        run = await _post_and_deliver(live, plan.fanout_payloads, FANOUT_DESTINATIONS)
    rate = run.arrived / run.seconds
    return Sample(rate, 0.0, 0.0, _cpu_us(run.cpu, run.arrived + run.duplicates), 0), run


async def _limit_c_run(bench: Bench) -> Sample:
    plan = bench.plan
    async with sink(bench.workdir, core=bench.placement.load, name="sink-c") as control:
        argv = python_module(
            "bench.limits",
            "c",
            "--url",
            control.url("/d0"),
            "--in-flight",
            str(DELIVERY_IN_FLIGHT),
            "--warmup",
            str(plan.warmup),
            "--seconds",
            str(plan.seconds),
        )
        out, _ = await run_to_end(
            f"limit-c-{next(_limits)}",
            argv,
            workdir=bench.workdir,
            core=bench.placement.service,
            timeout=plan.warmup + plan.seconds + 60,
        )
        result = json.loads(out)
        requests = int(result["requests"])
        if requests == 0:
            raise HarnessError("limit C: no request succeeded")
        rate = requests / float(result["seconds"])
        return Sample(rate, 0.0, 0.0, _cpu_us(float(result["cpu_seconds"]), requests), 0)


async def fanout(bench: Bench) -> list[Figure]:
    """One account, ten destinations on the sink, alternated with limit C."""
    versus_c = Pairs()
    problems: list[str] = []
    duplicates = 0
    runs: list[_Delivered] = []
    for _ in range(bench.plan.pairs):
        sample, run = await _fanout_run(bench)
        runs.append(run)
        duplicates += run.duplicates
        if not run.settled:
            problems.append(f"incomplete: {run.arrived} deliveries arrived within the limit")
        versus_c.add(sample, await _limit_c_run(bench))
    system, limit, ratio = versus_c.system, versus_c.limit, versus_c.ratio
    deliveries = bench.plan.fanout_payloads * FANOUT_DESTINATIONS
    notes = (
        f"{bench.plan.fanout_payloads} payloads x {FANOUT_DESTINATIONS} destinations = "
        f"{deliveries} deliveries, from the first 202 until the sink has them all and no "
        "delivery is pending; server CPU includes ingesting the payloads; "
        + versus_c.describe("limit C")
    )
    if duplicates:
        problems.append(f"{duplicates} deliveries arrived twice (over all runs)")
    if problems:
        notes += "; " + "; ".join(problems)
    return [
        Figure(
            "fanout.throughput",
            median([s.rate for s in system]),
            "deliveries/s",
            limit=median([s.rate for s in limit]),
            ratio=ratio,
            target=">= 0.5 x limit C",
            met=ratio >= 0.5 and all(run.settled for run in runs),
            cpu_us=median([s.cpu_us for s in system]),
            notes=notes,
        ),
        Figure(
            "limit_c.throughput",
            median([s.rate for s in limit]),
            "req/s",
            cpu_us=median([s.cpu_us for s in limit]),
            notes=f"bare aiohttp client, one keep-alive session, {DELIVERY_IN_FLIGHT} in "
            "flight, POSTing to the sink (client CPU per request)",
        ),
    ]
