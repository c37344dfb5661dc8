"""How much of everything a run does (quick or full), and what every scenario shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.loadgen import Tool
from bench.procs import Placement

CONCURRENCIES: Final = (1, 16, 64)
LIMIT_CONCURRENCY: Final = 64
DELIVERY_IN_FLIGHT: Final = 64
"""The service's default delivery concurrency, used as limit C's requests in flight."""
FANOUT_DESTINATIONS: Final = 10
E2E_DESTINATIONS: Final = 3
E2E_RATE: Final = 500.0


@dataclass(frozen=True, slots=True)
class Plan:
    """Counts and durations; seconds unless said otherwise."""

    quick: bool
    pairs: int
    warmup: float
    seconds: float
    fanout_payloads: int
    fanout_warmup: int
    e2e_seconds: float
    e2e_runs: int
    log_events: int
    log_runs: int
    log_budget: float
    """Stop repeating rebuilds or audit reads once this much time went into them."""
    memory_counts: tuple[int, int]
    memory_chunk: int
    """Payloads posted at a time; the next chunk waits until the previous is delivered."""
    memory_budget: float
    """Longest time the memory scenario may spend sending and delivering."""

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick=True,
                pairs=1,
                warmup=1.0,
                seconds=1.0,
                fanout_payloads=150,
                fanout_warmup=20,
                e2e_seconds=2.0,
                e2e_runs=1,
                log_events=10_000,
                log_runs=1,
                log_budget=10.0,
                memory_counts=(400, 2_000),
                memory_chunk=200,
                memory_budget=15.0,
            )
        return cls(
            quick=False,
            pairs=3,
            warmup=2.0,
            seconds=8.0,
            fanout_payloads=2_000,
            fanout_warmup=100,
            e2e_seconds=10.0,
            e2e_runs=3,
            log_events=1_000_000,
            log_runs=3,
            log_budget=150.0,
            memory_counts=(100_000, 1_000_000),
            memory_chunk=2_000,
            # 1M payloads delivered at about 800/s: some 21 minutes, most of a full run.
            memory_budget=1800.0,
        )


@dataclass(frozen=True, slots=True)
class Bench:
    """What every scenario needs: the plan, a temporary directory, cores, the generator."""

    plan: Plan
    workdir: Path
    placement: Placement
    tool: Tool
