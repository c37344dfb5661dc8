"""The figures on a large log: the offline rebuild and the audit read through ``/api/events/``.

The log is made once per bench run (``bench.biglog make``) and folded once in-process, so
that the server can start on it at once and ``datapusher rebuild`` has read models to check
against; both figures then use that one file.
"""

from __future__ import annotations

import json
import re
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.errors import HarnessError
from bench.plan import Bench
from bench.procs import python_module, run_to_end
from bench.report import Figure
from bench.service import ADMIN, Admin, command_exists, serve
from bench.stats import median

PAGE: Final = 1000
TARGET: Final = 100_000.0
_FOLDED: Final = re.compile(r"folded \d+ events in ([\d.]+) s")
_NEXT: Final = b'"next_after":'
_POSITION: Final = b'"position":'


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class LogFile:
    """The big log of this bench run: made, then given its read models, on first use."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.path = bench.workdir / "biglog.sqlite3"
        self.events = 0
        self.cli_startup: float | None = None
        """Seconds of ``datapusher rebuild --help`` (None: the command does not exist)."""
        self.first_fold: float | None = None
        """Seconds of the in-process fold that prepared the log (None: the CLI did it)."""
        self._probed = False
        self._prepared = False

    async def _run(self, name: str, argv: list[str], **options: Any) -> tuple[str, float]:
        bench = self.bench
        return await run_to_end(
            name, argv, workdir=bench.workdir, core=bench.placement.service, **options
        )

    async def made(self) -> Path:
        if self.events == 0:
            argv = python_module(
                "bench.biglog", "make", "--db", str(self.path), "--events", str(self.events_wanted)
            )
            out, _ = await self._run("biglog-make", argv, timeout=900)
            self.events = int(json.loads(out)["events"])
        return self.path

    @property
    def events_wanted(self) -> int:
        return self.bench.plan.log_events

    async def has_cli(self) -> bool:
        if not self._probed:
            self.cli_startup = await command_exists("rebuild", self.bench.workdir)
            self._probed = True
        return self.cli_startup is not None

    async def prepared(self) -> Path:
        """The log with its read models folded once (by ``datapusher rebuild`` when it
        exists: that first run reports differences, since there was nothing to compare)."""
        await self.made()
        if not self._prepared:
            if await self.has_cli():
                await self.rebuild_cli("rebuild-prepare", ok_codes=(0, 1))
            else:
                self.first_fold = await self.fold()
            self._prepared = True
        return self.path

    async def fold(self) -> float:
        """Seconds ``Projections(store).rebuild()`` takes, in a process of its own."""
        argv = python_module("bench.biglog", "rebuild", "--db", str(self.path))
        out, _ = await self._run("biglog-rebuild", argv, timeout=1800)
        return float(json.loads(out)["seconds"])

    async def rebuild_cli(self, name: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[str, float]:
        """``datapusher rebuild --db PATH``: its output and its wall time."""
        argv = python_module("api.cli", "rebuild", "--db", str(self.path))
        return await self._run(name, argv, timeout=1800, ok_codes=ok_codes)


def _more(runs: list[float], wanted: int, spent: float, budget: float) -> bool:
    """Whether to start another run: fewer than ``wanted`` so far, and one more like the
    last would still end within ``budget`` seconds."""
    if not runs:
        return True
    return len(runs) < wanted and spent + spent / len(runs) <= budget


# -- rebuild ----------------------------------------------------------------------------------


async def rebuild(bench: Bench, log: LogFile) -> list[Figure]:
    """``datapusher rebuild --db PATH`` when it exists, else ``Projections.rebuild()``."""
    plan = bench.plan
    await log.prepared()
    rates: list[float] = []
    folds: list[float] = []
    cpu: list[float] = []
    spent = 0.0
    if log.first_fold is not None:
        rates.append(log.events / log.first_fold)
        spent = log.first_fold
    while _more(rates, plan.log_runs, spent, plan.log_budget):
        before = _children_cpu()
        if log.cli_startup is not None:
            out, seconds = await log.rebuild_cli(f"rebuild-{len(rates) + 1}")
            if found := _FOLDED.search(out):
                folds.append(float(found.group(1)))
        else:
            seconds = await log.fold()
        cpu.append((_children_cpu() - before) / log.events * 1e6)
        rates.append(log.events / seconds)
        spent += seconds
    rate = median(rates)
    if log.cli_startup is not None:
        how = (
            "`datapusher rebuild --db PATH`, wall time of the whole command: start-up (about "
            f"{log.cli_startup:.2f} s, the time of `rebuild --help`), fold and comparison"
        )
        if folds:
            fold_rate = log.events / median(folds)
            how += f"; the fold alone, as the command reports it: {fold_rate:,.0f} events/s"
    else:
        how = (
            "`datapusher rebuild` does not exist yet: in-process "
            "projections.runner.Projections(store).rebuild(), time of the fold alone"
        )
    return [
        Figure(
            "rebuild.throughput",
            rate,
            "events/s",
            target=">= 100000 events/s",
            met=rate >= TARGET,
            cpu_us=median(cpu) if cpu else None,
            notes=f"{how}; a log of {log.events} events (account, destination, then "
            f"PayloadReceived + DeliverySucceeded pairs); median of {len(rates)} runs",
        )
    ]


# -- audit read -------------------------------------------------------------------------------


@dataclass
class _Pager:
    """Reads a page's event count and ``next_after`` without decoding every envelope.

    The shortcut (count ``"position":`` keys, decode only the tail) is checked against a full
    decode on the first page and dropped if the two disagree.
    """

    shortcut: bool | None = None

    def read(self, body: bytes) -> tuple[int, Any]:
        if self.shortcut is None:
            full = self._full(body)
            self.shortcut = self._fast(body) == full
            return full
        fast = self._fast(body) if self.shortcut else None
        return fast if fast is not None else self._full(body)

    @staticmethod
    def _full(body: bytes) -> tuple[int, Any]:
        page = json.loads(body)
        return len(page["items"]), page["next_after"]

    @staticmethod
    def _fast(body: bytes) -> tuple[int, Any] | None:
        at = body.rfind(_NEXT)
        if at < 0:
            return None
        try:
            after = json.loads(body[at + len(_NEXT) :].rstrip().rstrip(b"}"))
        except ValueError:
            return None
        return body.count(_POSITION), after


async def _read_all(base: str, child_cpu: Callable[[], float]) -> tuple[int, float, float]:
    """Page through the whole log; returns (events, seconds, server CPU seconds)."""
    pager = _Pager()
    total = 0
    after: Any = None
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=ADMIN, timeout=timeout) as session:
        cpu_before = child_cpu()
        started = time.perf_counter()
        while True:
            url = f"{base}/api/events/?limit={PAGE}"
            if after is not None:
                url += f"&after={after}"
            async with session.get(url) as answer:
                body = await answer.read()
                if answer.status != 200:
                    raise HarnessError(f"GET {url} answered {answer.status}: {body[:300]!r}")
            count, after = pager.read(body)
            total += count
            if after is None:
                break
        seconds = time.perf_counter() - started
        return total, seconds, child_cpu() - cpu_before


async def audit(bench: Bench, log: LogFile) -> list[Figure]:
    """``GET /api/events/?after=&limit=1000`` from the start of the log to its end."""
    plan = bench.plan
    await log.prepared()
    rates: list[float] = []
    cpu: list[float] = []
    spent = 0.0
    async with serve(bench.workdir, core=bench.placement.service, db=log.path) as service:
        async with Admin(service.base) as admin:
            status = await admin.status(f"/api/events/?limit={PAGE}")
        if status != 200:
            return [
                Figure(
                    "audit.throughput",
                    None,
                    "events/s",
                    target=">= 100000 events/s",
                    notes=f"not available: GET /api/events/ answered {status}",
                )
            ]
        while _more(rates, plan.log_runs, spent, plan.log_budget):
            events, seconds, cpu_seconds = await _read_all(service.base, service.child.cpu_seconds)
            if events < log.events:
                raise HarnessError(f"audit read saw {events} of {log.events} events")
            rates.append(events / seconds)
            cpu.append(cpu_seconds / events * 1e6)
            spent += seconds
    rate = median(rates)
    return [
        Figure(
            "audit.throughput",
            rate,
            "events/s",
            target=">= 100000 events/s",
            met=rate >= TARGET,
            cpu_us=median(cpu),
            notes=f"pages of {PAGE} through a log of {log.events} events, one keep-alive "
            f"client; median of {len(rates)} runs",
        )
    ]
