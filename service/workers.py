"""`--workers N`: N server processes share the port (SO_REUSEPORT); this parent keeps
them running, restarts one that dies, and passes SIGTERM/SIGINT (drain) and SIGHUP on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import multiprocess

from service.config import Settings
from service.metrics import MULTIPROCESS_DIR, multiprocess_registry
from service.server import StartupError, authenticator, metrics_endpoint, tls_credentials
from service.startup import StoppedError, migrate_at, stop_event
from service.stop_signals import STOP_SIGNALS

log = logging.getLogger("users.workers")

# A worker that dies sooner than this after its start waits before the next try, so a
# worker that cannot start does not spin.
RESTART_BACKOFF_SECONDS = 1.0
STABLE_SECONDS = 5.0
# How long past the grace period a worker may take to exit before it is killed.
EXIT_MARGIN_SECONDS = 5.0


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        argv: Sequence[str],
        port: int,
        stopping: asyncio.Event,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_exit = on_exit
        # The parent's own arguments, then what makes a worker: last flag wins in argparse,
        # so every flag the operator gave (and any added later) reaches the workers.
        self._command = [
            sys.executable, "-m", "service", *argv,
            "--worker", "--workers", "1", "--port", str(port),
        ]  # fmt: skip
        self._workers = [_Worker(index) for index in range(settings.workers)]
        self._stopping = stopping

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        keepers = [asyncio.create_task(self._keep(worker)) for worker in self._workers]
        await self._stopping.wait()
        log.info("stopping: draining %d workers", len(self._workers))
        codes = await asyncio.gather(*keepers)
        log.info("stopped")
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, worker: _Worker) -> int:
        """Runs one worker slot until stopping; 0 if its last worker stopped cleanly."""
        while not self._stopping.is_set():
            worker.started = time.monotonic()
            worker.process = await asyncio.create_subprocess_exec(
                *self._command, stdin=asyncio.subprocess.DEVNULL
            )
            worker.pids.append(worker.process.pid)
            log.info("worker %d started (pid %d)", worker.index, worker.process.pid)
            exited = asyncio.create_task(worker.process.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if self._stopping.is_set():
                return await self._stop(worker, exited)
            code = exited.result()
            if self._on_exit is not None:
                self._on_exit(worker.process.pid)
            worker.restarts += 1
            log.warning(
                "worker %d (pid %d) exited with %d; restarting it",
                worker.index,
                worker.process.pid,
                code,
            )
            if time.monotonic() - worker.started < STABLE_SECONDS:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RESTART_BACKOFF_SECONDS):
                        await self._stopping.wait()
        return 0

    async def _stop(self, worker: _Worker, exited: asyncio.Task[int]) -> int:
        process = worker.process
        assert process is not None
        # Signalled here rather than all at once when the stop came: a worker being
        # spawned then had no process yet, and would have served until killed after the
        # grace period.
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(self._settings.grace_seconds + EXIT_MARGIN_SECONDS):
                code = await exited
        except TimeoutError:
            log.error("worker %d (pid %d) outlived its grace period; killing it", worker.index,
                      process.pid)  # fmt: skip
            process.kill()
            await exited
            return 1
        # A worker signalled before its `__main__` could catch the signal dies of it (the
        # kernel's default): stopped as asked, having served nothing. SIGINT: a terminal's
        # Ctrl-C reaches the workers too.
        if code == 0 or -code in STOP_SIGNALS:
            return 0
        log.error("worker %d (pid %d) exited with %d while stopping", worker.index,
                  process.pid, code)  # fmt: skip
        return 1

    def _forward(self, signum: int) -> None:
        for worker in self._workers:
            if worker.process is not None and worker.process.returncode is None:
                worker.process.send_signal(signum)


def reserve_port(host: str, port: int) -> socket.socket:
    """Binds host:port with SO_REUSEPORT and keeps it bound (never listening, so it takes
    no connections): port 0 becomes one real port for every worker, and a port that some
    other program holds fails here, once, instead of in every worker."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bare or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        reserved = socket.socket(family, kind, proto)
    except OSError as error:
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(address)
    except OSError as error:
        reserved.close()
        raise StartupError(f"cannot listen on {host}:{port}: is the port in use?") from error
    return reserved


def bound_port(reserved: socket.socket) -> int:
    return int(reserved.getsockname()[1])


async def supervise(settings: Settings, argv: Sequence[str]) -> int:
    """The parent of `--workers N`: migrates once, then runs the workers until SIGTERM."""
    stopping = stop_event()
    # Bad tokens or TLS files fail here, once, rather than in every worker.
    authenticator(settings)
    tls_credentials(settings)
    try:
        await migrate_at(settings.database_url, stopping, settings.database_pooler)
    except StoppedError:
        log.info("stopped before serving")
        return 0
    reserved = reserve_port(settings.host, settings.port)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(reserved.close)
        on_exit = None
        if settings.metrics_port is not None:
            folder = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="users-metrics-"))
            # Read by prometheus-client when a worker imports it: it then writes its
            # metrics to files here, which the parent's endpoint sums.
            os.environ[MULTIPROCESS_DIR] = folder
            endpoint = metrics_endpoint(settings, multiprocess_registry())
            cleanup.callback(endpoint.close)

            def on_exit(pid: int) -> None:
                multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]

        port = bound_port(reserved)
        log.info("users.v1 serving on %s:%d with %d workers", settings.host, port, settings.workers)
        return await Supervisor(settings, argv, port, stopping, on_exit).run()
