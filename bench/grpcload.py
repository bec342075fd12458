"""The Go load generator of ../shared/anchors (tools/grpcload), built into the bench's cache.

grpc-go on one core (GOMAXPROCS=1, as the anchors run it): thousands of calls in flight
cost it far less CPU than a Python client would take from the server's two cores. The
source is read from the anchors folder and never copied into this repository; the binary
lives under ~/.cache/users-bench/grpcload and is rebuilt when main.go is newer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.measurement import REPO, BenchError, say

DEFAULT_ANCHORS = REPO.parent / "shared" / "anchors"
SOURCE = Path("tools", "grpcload", "main.go")
GOPATH = Path("/usr/share/gocode")  # Debian's Go sources: grpc-go 1.33, protobuf-go 1.28
# What run.sh of the anchors installs for grpcload (no Go module proxy here).
PACKAGES = (
    ("golang-go", None),
    ("golang-google-grpc-dev", GOPATH / "src/google.golang.org/grpc"),
    ("golang-google-protobuf-dev", GOPATH / "src/google.golang.org/protobuf"),
)
GET_USER = "/users.v1.UserService/GetUser"
VIEW_BASIC = 1
EXIT_GRACE_SECONDS = 30.0


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "users-bench" / "grpcload"


@dataclass(frozen=True, slots=True)
class GetLoad:
    """A closed loop of GetUser calls: `concurrency` workers over `connections` HTTP/2
    connections, each call with a `deadline`, ids random in 1..max_id."""

    target: str
    concurrency: int
    connections: int
    deadline: float
    warmup: float
    duration: float
    max_id: int
    view: int = VIEW_BASIC

    def argv(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "-mode=get",
            f"-addr={self.target}",
            f"-c={self.concurrency}",
            f"-conns={self.connections}",
            f"-timeout={self.deadline:g}s",
            f"-warmup={self.warmup:g}s",
            f"-d={self.duration:g}s",
            f"-ids={self.max_id}",
            f"-view={self.view}",
        ]


@dataclass(frozen=True, slots=True)
class CreateLoad:
    """A closed loop of CreateUser calls: `concurrency` workers over `connections` HTTP/2
    connections, each call with a `deadline`; emails c<tag>-<n>@bench.example.com, so a
    tag of its own per run keeps runs on one database from colliding."""

    target: str
    concurrency: int
    connections: int
    deadline: float
    warmup: float
    duration: float
    tag: str

    def argv(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "-mode=create",
            f"-addr={self.target}",
            f"-c={self.concurrency}",
            f"-conns={self.connections}",
            f"-timeout={self.deadline:g}s",
            f"-warmup={self.warmup:g}s",
            f"-d={self.duration:g}s",
            f"-tag={self.tag}",
        ]


Load = GetLoad | CreateLoad


@dataclass(frozen=True, slots=True)
class LoadResult:
    """grpcload's JSON: calls that ended inside the measured window."""

    ok: int
    errors: Mapping[str, int]  # grpc-go code names: Unavailable, DeadlineExceeded, ...
    first_error: str
    mismatched: int  # OK answers for another id than asked (create: without an id)
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_seconds: float  # the generator's own CPU, warm-up included

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def from_json(cls, raw: str) -> LoadResult:
        fields = json.loads(raw)
        return cls(
            ok=int(fields["ok"]),
            errors={str(code): int(n) for code, n in (fields.get("errors") or {}).items()},
            first_error=str(fields.get("first_error", "")),
            mismatched=int(fields.get("mismatch", 0)),
            seconds=float(fields["duration_s"]),
            p50_ms=float(fields["p50_ms"]),
            p99_ms=float(fields["p99_ms"]),
            max_ms=float(fields["max_ms"]),
            client_cpu_seconds=float(fields["client_cpu_s"]),
        )


def build(anchors: Path) -> Path:
    """The binary, built from `anchors`/tools/grpcload/main.go unless it is up to date."""
    source = anchors / SOURCE
    if not source.is_file():
        raise BenchError(
            f"no Go load generator at {source}: the overload and watch suites need the "
            "anchors folder (../shared/anchors beside the repository, or --anchors-dir)"
        )
    binary = cache_dir() / "grpcload"
    if binary.is_file() and binary.stat().st_mtime >= source.stat().st_mtime:
        return binary
    _install_go()
    # A writable copy: go may write next to the package, and the anchors folder is shared.
    package = cache_dir() / "src" / "grpcload"
    package.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, package / "main.go")
    say(f"building {binary} from {source}")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "."],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"go build of {source} failed: {_last_line(done.stderr)}")
    return binary


def _install_go() -> None:
    missing = [
        name
        for name, sources in PACKAGES
        if not (sources.is_dir() if sources else shutil.which("go"))
    ]
    if not missing:
        return
    say(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        except OSError as error:
            raise BenchError(
                f"cannot run apt-get to install {' '.join(missing)}: {error}"
            ) from None
        if done.returncode != 0:
            raise BenchError(
                f"{' '.join(argv[:2])} failed ({_last_line(done.stderr)}); "
                f"install {' '.join(missing)} by hand"
            )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


async def start(binary: Path, load: Load) -> asyncio.subprocess.Process:
    """Started, not awaited: the caller reads the server's counters at the window's edges."""
    return await asyncio.create_subprocess_exec(
        *load.argv(binary),
        env={**os.environ, "GOMAXPROCS": "1"},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, load: Load) -> LoadResult:
    limit = load.warmup + load.duration + load.deadline + EXIT_GRACE_SECONDS
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"grpcload -c {load.concurrency} ran past {limit:.0f} s") from None
    if process.returncode != 0:
        raise BenchError(
            f"grpcload -c {load.concurrency} exited {process.returncode}: "
            f"{_last_line(err.decode(errors='replace'))}"
        )
    return LoadResult.from_json(out.decode().strip().splitlines()[-1])
