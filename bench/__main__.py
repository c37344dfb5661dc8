"""``python -m bench [--quick] [--json PATH] [--only NAME ...]``: measure, print, exit.

Exit status 0 when every scenario measured something, targets met or not; 1 when the
harness itself failed (a process would not start, a tool broke); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

from bench import logscale, loops, scenarios, steady
from bench.loadgen import WRK, Tool, default_tool
from bench.plan import Bench, Plan
from bench.procs import Placement, pin_self
from bench.report import Figure, print_table, write_json

SCENARIOS: Final = ("ingest", "fanout", "e2e", "rebuild", "audit", "memory")

Scenario = Callable[[], Awaitable[list[Figure]]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small counts and short runs (a CI smoke test)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        metavar="NAME",
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--tool",
        choices=["wrk", "builtin"],
        help="load generator (default: wrk when installed, else the built-in one)",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temporary directory (logs, databases)"
    )
    return parser


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _scenarios(bench: Bench, names: Sequence[str]) -> list[tuple[str, Scenario]]:
    log = logscale.LogFile(bench)
    table: dict[str, Scenario] = {
        "ingest": lambda: scenarios.ingest(bench),
        "fanout": lambda: scenarios.fanout(bench),
        "e2e": lambda: steady.e2e(bench),
        "rebuild": lambda: logscale.rebuild(bench, log),
        "audit": lambda: logscale.audit(bench, log),
        "memory": lambda: steady.memory(bench),
    }
    return [(name, table[name]) for name in SCENARIOS if name in names]


async def _run(bench: Bench, names: Sequence[str]) -> tuple[list[Figure], list[str]]:
    """Every chosen scenario in turn; a failing one is reported and the others still run."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    figures: list[Figure] = []
    failures: list[str] = []
    for name, scenario in _scenarios(bench, names):
        started = time.monotonic()
        _progress(f"{name}: running")
        try:
            figures.extend(await scenario())
        except Exception as exc:
            failures.append(name)
            message = f"{type(exc).__name__}: {exc}"
            figures.append(Figure(f"{name}.FAILED", None, "", notes=message))
            _progress(f"{name}: FAILED: {message}")
        else:
            _progress(f"{name}: done in {time.monotonic() - started:.1f} s")
    return figures, failures


def _context(bench: Bench, argv: Sequence[str], limits_on_uvloop: bool) -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "command": shlex.join(["python", "-m", "bench", *argv]),
        "mode": "quick" if bench.plan.quick else "full",
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_generator": bench.tool,
        "pinning": bench.placement.describe(),
        "cores": os.cpu_count(),
        "load_average": f"{load1:.2f} {load5:.2f}",
        "python": platform.python_version(),
        "limits_event_loop": "uvloop" if limits_on_uvloop else "asyncio",
        "harness_event_loop": "uvloop" if loops.uvloop_available() else "asyncio",
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    tool: Tool = args.tool or default_tool()
    if tool == "wrk" and WRK is None:
        print("python -m bench: --tool wrk, but wrk is not installed", file=sys.stderr)
        return 2
    placement = Placement.detect()
    pin_self(placement.load)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="datapusher-bench-"))
    bench = Bench(Plan.make(args.quick), workdir, placement, tool)
    context = _context(bench, arguments, loops.stack_uses_uvloop())
    _progress(", ".join(f"{key}: {value}" for key, value in context.items()))
    try:
        figures, failures = loops.run(_run(bench, args.only or SCENARIOS), fast=True)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("python -m bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            _progress(f"kept {workdir}")
        else:
            _remove(workdir)
    context["seconds"] = round(time.monotonic() - started, 1)
    print_table(figures, sys.stdout)
    print(
        f"\n{context['mode']} run, {context['seconds']} s; {context['pinning']}; "
        f"load generator {tool}; load average at start {context['load_average']}"
    )
    if args.json is not None:
        write_json(figures, args.json, context)
    if failures:
        print(f"the harness failed in: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
