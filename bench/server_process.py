"""The service as a subprocess: free port, healthy before use, RSS watched, SIGTERM to stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.cpu import tree_cpu_seconds
from bench.measurement import REPO, BenchError
from bench.source_tree import python_env

READINESS_SERVICE = "users.v1.UserService"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
RSS_SAMPLE_SECONDS = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RssSampler(threading.Thread):
    """Peak resident memory of a process and its children (later: --workers), every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self._process = psutil.Process(pid)
        self._stopped = threading.Event()
        self.peak_bytes = 0

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                tree = [self._process, *self._process.children(recursive=True)]
                self.peak_bytes = max(self.peak_bytes, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass  # the process or a child is exiting; the next sample settles it
            self._stopped.wait(RSS_SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


class ServerProcess:
    """`python -m service serve` on 127.0.0.1; `async with` starts it healthy and stops it.

    `tree`: the source tree the service runs from (another commit's, bench/source_tree.py).
    """

    def __init__(
        self,
        database_url: str,
        extra_flags: tuple[str, ...] = (),
        *,
        tree: Path = REPO,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: settings added to the environment (OTEL_* for bench/tracing_cost.py)."""
        self.port = free_port()
        self._env = env
        self.target = f"127.0.0.1:{self.port}"
        self._database_url = database_url
        self._extra_flags = extra_flags
        self._tree = tree
        self._process: asyncio.subprocess.Process | None = None
        self._sampler: RssSampler | None = None
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in __aexit__
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def peak_rss_bytes(self) -> int:
        return self._sampler.peak_bytes if self._sampler is not None else 0

    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its children so far."""
        assert self._process is not None
        return tree_cpu_seconds(self._process.pid)

    async def __aenter__(self) -> Self:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "serve",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--database-url={self._database_url}",
            *self._extra_flags,
            cwd=self._tree,
            env=(
                {**(python_env(self._tree) or os.environ), **self._env}
                if self._env
                else python_env(self._tree)
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self._sampler = RssSampler(self._process.pid)
        self._sampler.start()
        try:
            await self._wait_serving()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_text(self) -> str:
        """Everything the server wrote so far. Read through a second open file: the
        server's stdout shares the first one's offset, and seeking it would make the
        server write over its own log."""
        with open(f"/proc/self/fd/{self._log.fileno()}", "rb") as log:
            return log.read().decode(errors="replace")

    async def _wait_serving(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        async with grpc.aio.insecure_channel(self.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    code = self._process.returncode
                    raise BenchError(f"the service exited {code} at start:\n{self.log_tail()}")
                try:
                    answer = await health.Check(
                        health_pb2.HealthCheckRequest(service=READINESS_SERVICE), timeout=1.0
                    )
                except grpc.aio.AioRpcError:
                    answer = None
                if answer is not None and answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                await asyncio.sleep(0.1)
        raise BenchError(
            f"the service was not SERVING within {START_TIMEOUT_SECONDS:.0f} s:\n{self.log_tail()}"
        )

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            self.exit_code = process.returncode
        if self._sampler is not None:
            self._sampler.stop()
        self._log.close()
