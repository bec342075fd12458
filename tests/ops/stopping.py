"""Stopping a `python -m service serve` subprocess while it is still starting."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil  # type: ignore[import-untyped]

from tests.process.server_process import START_TIMEOUT_SECONDS, ServerProcess

# Stopping a server that serves nothing yet takes well under a second; the rest is slack
# for a loaded machine.
STOP_SECONDS = 20.0


@contextmanager
def starting(process: ServerProcess) -> Iterator[ServerProcess]:
    """The process just spawned, not yet healthy; killed on the way out if still running."""
    process.start()
    try:
        yield process
    finally:
        process.__exit__(None, None, None)


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler of its own for `signum` (Linux: SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def wait_until_catches(pid: int, signum: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not catches(pid, signum):
        assert time.monotonic() < deadline, f"pid {pid} never caught {signum!r}"
        time.sleep(0.002)


def wait_for_children(pid: int, count: int) -> list[int]:
    """The pids of the process's first `count` children, as soon as they exist."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while len(children := psutil.Process(pid).children()) < count:
        assert time.monotonic() < deadline, f"pid {pid} has {len(children)} children"
        time.sleep(0.002)
    return [child.pid for child in children]


def stop_at(process: ServerProcess, moment: float | None) -> int:
    """Sends SIGTERM `moment` seconds after Python started running in the process, or, for
    None, as soon as the process catches SIGTERM; returns the exit code."""
    if moment is None:
        wait_until_catches(process.pid, signal.SIGTERM)
    else:
        # Python catches SIGINT before the first line of `service` runs; a signal that
        # comes sooner meets only the kernel's default, which no code of ours can change.
        wait_until_catches(process.pid, signal.SIGINT)
        time.sleep(moment)
    return process.terminate(STOP_SECONDS)


def workers_of(database_url: str) -> list[int]:
    """Worker processes serving `database_url`, wherever their parent went."""
    found = []
    for candidate in psutil.process_iter(["cmdline"]):
        command = candidate.info["cmdline"] or []
        if "--worker" in command and database_url in command:
            found.append(candidate.pid)
    return found
