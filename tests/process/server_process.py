"""`python -m service` as a subprocess: free port, healthy before use, SIGTERM to stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc
import psutil  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc

START_TIMEOUT_SECONDS = 60.0
# Settings the developer's shell may export; a test sets the ones it means to.
SERVICE_ENV = ("HOST", "PORT", "DATABASE_URL", "GRACE_SECONDS", "LOG_FORMAT", "PAGE_TOKEN_KEY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def service_command(*args: str) -> list[str]:
    # The fault handler prints the Python stack of a crash in C code, which otherwise
    # ends the process with no trace at all.
    return [sys.executable, "-X", "faulthandler", "-m", "service", *args]


def service_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SERVICE_ENV}
    return {**env, **(overrides or {})}


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def health_status(target: str, service: str = "") -> str | None:
    """The status name ("SERVING", ...), or None while the server does not answer."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=1
            )
        except grpc.RpcError:
            return None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


# What the fault handler writes when the process dies in C code (SIGSEGV, SIGABRT...).
FAULT_DUMP = "Fatal Python error"


class ServerProcess:
    """`python -m service serve ARGS` in `workdir`; `with` waits until it is healthy and
    kills it if a test left it running. Leaving the `with` fails the test if the server
    died on its own or wrote a fault dump, whatever the test was about."""

    def __init__(
        self,
        workdir: Path,
        args: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.target = f"127.0.0.1:{port}"
        self._command = service_command("serve", *args)
        self._env = service_env(env)
        self._stderr_path = workdir / f"server-{port}-{time.monotonic_ns()}.stderr"
        self._stderr: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._signalled = False

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self._stderr = self._stderr_path.open("wb")
        self._process = subprocess.Popen(
            self._command,
            cwd=self.workdir,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait_until_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while health_status(self.target) != "SERVING":
            code = self._process.poll()
            if code is not None:
                raise AssertionError(f"the server exited {code} before serving:\n{self.stderr}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not serve within {timeout} s:\n{self.stderr}")
            time.sleep(0.1)

    def terminate(self, timeout: float, signum: int = signal.SIGTERM) -> int:
        """Sends `signum`, then the exit code; fails if the process outlives `timeout` seconds."""
        assert self._process is not None
        self._signalled = True
        self._process.send_signal(signum)
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the server was still running {timeout} s after {signum!r}:\n{self.stderr}"
            ) from None

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_until_healthy()
        except BaseException:
            self._kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        died = self._process is not None and not self._signalled and not self.alive()
        self._kill()
        if exc is None or died:
            # A server that died explains whatever failed in the test: it is the error.
            self.check_not_crashed(died)

    def check_not_crashed(self, died: bool = False) -> None:
        assert self._process is not None
        if died:
            code = self._process.returncode
            raise AssertionError(f"the server died on its own (exit {code}):\n{self.stderr}")
        if FAULT_DUMP in self.stderr:
            raise AssertionError(f"the server wrote a fault dump:\n{self.stderr}")

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        # Its workers too (--workers), even once their parent is gone: a test that failed
        # must not leave them serving.
        port = self.target.rsplit(":", 1)[1]
        for candidate in psutil.process_iter(["cmdline"]):
            command = candidate.info["cmdline"] or []
            if "--worker" in command and port in command:
                with contextlib.suppress(psutil.NoSuchProcess):
                    candidate.kill()
        if self._stderr is not None:
            self._stderr.close()
