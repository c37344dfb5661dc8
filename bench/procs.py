"""Child processes of the benchmark: started pinned to a core, observed through ``/proc``,
and always stopped (SIGTERM, then SIGKILL) by the ``running`` context manager.

Pinning: with two or more usable cores, whatever is measured (the service, a limit, the
limit-C client) runs on the first one and the load generator (this process, wrk, the sink)
on the second, so the two never compete for one core. With one core nothing is pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from bench.errors import HarnessError

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
ROOT: Final = Path(__file__).resolve().parent.parent
"""The directory holding the ``bench`` package: children find ``bench.*`` from anywhere."""
TASKSET: Final = shutil.which("taskset")
STOP_TIMEOUT: Final = 15.0
READY_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class Placement:
    """The cores for what is measured (``service``) and for what measures it (``load``)."""

    service: int | None
    load: int | None

    @classmethod
    def detect(cls) -> Placement:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            return cls(None, None)
        return cls(cores[0], cores[1])

    def describe(self) -> str:
        if self.service is None:
            return "not pinned (fewer than 2 cores)"
        how = "taskset" if TASKSET else "sched_setaffinity"
        return f"service on core {self.service}, load generator on core {self.load} ({how})"


def pin_self(core: int | None) -> None:
    """Pin this process (and the children it starts later) to ``core``."""
    if core is not None:
        os.sched_setaffinity(0, {core})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, with the bench's root on ``PYTHONPATH``."""
    environ = {**os.environ, **(extra or {})}
    paths = [str(ROOT), *filter(None, environ.get("PYTHONPATH", "").split(os.pathsep))]
    environ["PYTHONPATH"] = os.pathsep.join(paths)
    return environ


def python_module(module: str, *args: str) -> list[str]:
    """The command line running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


@dataclass(slots=True)
class Child:
    """A started process; its output goes to ``log`` (a file, so it can never block)."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process, all its threads (from /proc)."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime is field 14, stime field 15
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        """Resident set size (VmRSS) in bytes."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise HarnessError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL at once, without waiting."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    async def stop(self) -> int:
        """SIGTERM, wait up to ``STOP_TIMEOUT`` seconds, then SIGKILL; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        return await self.process.wait()


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    core: int | None,
    env: Mapping[str, str] | None = None,
) -> Child:
    """Start ``argv`` pinned to ``core`` (when not None), its output in ``workdir/name.log``."""
    command = list(argv)
    if core is not None and TASKSET:
        command = [TASKSET, "-c", str(core), *command]
    log = workdir / f"{name}.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            env=child_environment(env),
        )
    if core is not None and not TASKSET:
        os.sched_setaffinity(process.pid, {core})
    return Child(name, process, log)


async def wait_ready(child: Child, url: str, *, headers: Mapping[str, str] | None = None) -> None:
    """Poll ``url`` until it answers 200; raises ``HarnessError`` if the child exits first
    or ``READY_TIMEOUT`` passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise HarnessError(
                    f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url, headers=headers) as answer:
                    if answer.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise HarnessError(f"{child.name} did not answer {url} within {READY_TIMEOUT}s")


@contextlib.asynccontextmanager
async def running(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    core: int | None,
    ready_url: str | None = None,
    ready_headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Child]:
    """A started (and, with ``ready_url``, answering) child, stopped on exit whatever happens."""
    child = await spawn(name, argv, workdir=workdir, core=core, env=env)
    try:
        if ready_url is not None:
            await wait_ready(child, ready_url, headers=ready_headers)
        yield child
    finally:
        try:
            await child.stop()
        except BaseException:
            child.kill()  # interrupted while stopping: never leave it running
            raise


async def run_to_end(
    name: str,
    argv: Sequence[str],
    *,
    workdir: Path,
    core: int | None,
    timeout: float,  # noqa: ASYNC109 - the bound is part of this call's contract
    env: Mapping[str, str] | None = None,
    ok_codes: Collection[int] = (0,),
) -> tuple[str, float]:
    """Run a command to its end; returns its stdout and its wall time in seconds.

    Its stderr goes to ``workdir/name.log``. Raises ``HarnessError`` when it exits with a
    code not in ``ok_codes`` or when ``timeout`` passes (the process is killed then).
    """
    command = list(argv)
    if core is not None and TASKSET:
        command = [TASKSET, "-c", str(core), *command]
    log = workdir / f"{name}.log"
    with log.open("ab") as errors:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
            env=child_environment(env),
        )
        if core is not None and not TASKSET:
            os.sched_setaffinity(process.pid, {core})
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout)
        except BaseException as exc:
            if process.returncode is None:
                process.kill()
                await process.wait()
            if isinstance(exc, TimeoutError):
                raise HarnessError(f"{name} did not finish within {timeout}s") from exc
            raise
        elapsed = time.perf_counter() - started
    if process.returncode not in ok_codes:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise HarnessError(f"{name} exited with {process.returncode}:\n{tail}")
    return out.decode(errors="replace"), elapsed
